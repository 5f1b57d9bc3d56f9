"""Every stream of a gantrack process masked by `redact.mask`: sys.stdout, sys.stderr (also
their binary buffers), warnings and log records. `install()`, the CLI's first call, routes
them through it; what native code or child processes write straight to file descriptors 1
and 2 is not seen.

A stream nobody reads does not stop the work: a closed descriptor 0, 1 or 2 (`>&-`) is opened
on /dev/null first (else the next file gantrack opens would take its number, and what is
printed would land in it), and a pipe whose reader went away (`gantrack train | head -1`) is
replaced by /dev/null at the first write that finds it broken; training goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterable
from typing import Any

from gantrack.runtime.errors import printable
from gantrack.runtime.redact import add_environment, mask


def _lines(pending):
    """(the whole lines, the rest) of pending text or bytes; '\r' ends a progress bar's line."""
    newline, carriage = ("\n", "\r") if isinstance(pending, str) else (b"\n", b"\r")
    end = max(pending.rfind(newline), pending.rfind(carriage)) + 1
    return pending[:end], pending[end:]


class MaskingStream:
    """A text stream that writes masked text to another one. Whole lines go through at once;
    the rest of a line waits for its end or a flush, so a secret written in one piece is never
    cut. Everything else (isatty, fileno, encoding, ...) is the wrapped stream's: terminals,
    progress bars and Keras' verbose output behave as before."""

    def __init__(self, stream):
        self._stream, self._pending, self._lock = stream, "", threading.RLock()
        self._buffer = None  # the binary buffer's wrapper, made once: it holds a line's start

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            if self._buffer is not None:
                self._buffer.flush_pending()  # bytes written before stay before
            done, self._pending = _lines(self._pending + text)
            if done:
                _unbroken(self._stream, self._stream.write, mask(done))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                pending, self._pending = self._pending, ""
                _unbroken(self._stream, self._stream.write, mask(pending))
            if self._buffer is not None:
                self._buffer.flush_pending()
            _unbroken(self._stream, self._stream.flush)

    def close(self) -> None:
        self.flush()
        self._stream.close()

    @property
    def buffer(self):
        if self._buffer is None:
            self._buffer = _MaskingBuffer(self, self._stream.buffer)
        return self._buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _MaskingBuffer:
    """A text stream's binary buffer that masks what is written to it, line by line."""

    def __init__(self, text: MaskingStream, buffer):
        self._text, self._buffer, self._pending = text, buffer, b""

    def _write_masked(self, data: bytes) -> None:
        encoding = getattr(self._text, "encoding", None) or "utf-8"
        text = mask(data.decode(encoding, "surrogateescape"))
        _unbroken(self._buffer, self._buffer.write, text.encode(encoding, "surrogateescape"))

    def write(self, data) -> int:
        data = bytes(data)
        self._text.flush()  # text written before stays before
        done, self._pending = _lines(self._pending + data)
        if done:
            self._write_masked(done)
        return len(data)

    def flush_pending(self) -> None:
        """Write the start of a line held back (the text stream's flush calls it)."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self._write_masked(pending)

    def flush(self) -> None:
        self.flush_pending()
        _unbroken(self._buffer, self._buffer.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._buffer, name)


def _unbroken(stream, call, *args):
    """call(*args), a write or flush of stream; when its pipe's reader is gone, stream's
    descriptor is pointed at /dev/null (for native code and the interpreter's last flush too)
    and the call made again."""
    try:
        return call(*args)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        _to_devnull(stream.fileno())
        return call(*args)


def _to_devnull(fd: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning with the message masked."""
    stream = file if file is not None else sys.stderr
    text = warnings.formatwarning(message, category, filename, lineno, line)
    with contextlib.suppress(OSError, AttributeError):  # as warnings does: no stream, or gone
        stream.write(mask(text))


def install() -> None:
    """Mask all this process prints: register the environment's secrets, wrap sys.stdout and
    sys.stderr in MaskingStream, show warnings masked. Call it before MLflow, Optuna or
    TensorFlow are imported: the logging handlers they make then write masked. Idempotent."""
    for fd in (0, 1, 2):  # closed (`>&-`): /dev/null, before any file can take its number
        try:
            os.fstat(fd)
        except OSError:
            _to_devnull(fd)
    add_environment(os.environ)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        if stream is None:  # the descriptor was closed when Python started
            stream = open(fd, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        if not isinstance(stream, MaskingStream):
            with contextlib.suppress(AttributeError, ValueError):  # an ASCII locale: escaped
                stream.reconfigure(errors="backslashreplace")
            setattr(sys, name, MaskingStream(stream))
    warnings.showwarning = _showwarning
    atexit.register(_flush_streams)


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, MaskingStream):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
                stream.flush()


class MaskingFormatter(logging.Formatter):
    """A logging formatter that masks secrets in every formatted record and escapes the
    unprintable characters of its message (a name from a file or a store holding a newline or
    a terminal escape sequence): one record, one line, whatever it quotes."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))
