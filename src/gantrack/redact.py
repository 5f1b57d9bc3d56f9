"""Passwords out of everything the project writes: params, tags, files, logs, error lines.

Database and tracking URLs carry credentials (`postgresql://user:password@host/db`). They are
masked by pattern, not by parsing, so URLs that do not parse are masked too.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://user:password@ -> scheme://user:***@ (greedy: a password may hold '@' unencoded)
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")


def mask(text: str) -> str:
    """text with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1***@", text)


def mask_values(values: dict[str, Any]) -> dict[str, Any]:
    """values with every string masked (for run params and tags)."""
    return {k: mask(v) if isinstance(v, str) else v for k, v in values.items()}


class MaskingFormatter(logging.Formatter):
    """A logging formatter that masks URL passwords in every formatted record."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))
