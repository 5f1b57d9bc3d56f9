"""No secret in anything a gantrack process shows or writes: params, tags, files, log lines,
error lines, and what MLflow, Optuna, SQLAlchemy or TensorFlow print inside the process.

`mask(text)` replaces secrets with *** by three nets, in this order:
1. Known values, in every spelling: values of environment variables named like a secret
   (PASSWORD, TOKEN, SECRET, KEY, CREDENTIAL, ...), passwords and secret query values of the
   URLs and connection strings in the environment (MLFLOW_TRACKING_URI, ...) and in the params
   (tune.storage; the CLI gives them to `add_secrets_in`), and `add_secret`'s. Each matches raw,
   percent-encoded (any of its characters, either hex case, twice), '+' for a space, backslash-
   or JSON-escaped: a password that breaks URL parsing (' ', '#', '@', '/', '%') is masked
   however a library spells it. Values under MIN_SECRET_LENGTH, small numbers and words such
   as true/none are not registered (they would mask ordinary text).
2. URL credentials by pattern: `scheme://user:password@` (up to the word's last '@'; with a
   space when a host follows; a password a URL parser reads as a port and a path when a host
   follows, or after a database's scheme), `scheme://TOKEN@` when the user part is 8+
   characters, and `user:password@host` with no scheme when a host follows.
3. Secret-named values: query parameters (?token=, &sig=, access_token, X-Amz-Signature, ...,
   also percent-encoded inside another URL), DSN and connection-string pairs (password=...,
   AccountKey=...), quoted pairs of a dict or JSON ('password': '...').

runtime/streams.py routes every stream of the process (stdout, stderr, warnings, log records)
through `mask`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, unquote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4
# Registered as a secret never: they are everywhere in ordinary text.
_TRIVIAL = {"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "undefined"}

# Environment variables whose value is a secret as a whole.
_I = re.IGNORECASE
_SECRET_ENV = re.compile(
    r"PASSWORD|PASSWD|PASSPHRASE|TOKEN|SECRET|KEY|CREDENTIAL|CONNECTION_?STRING|MYSQL_PWD"
    r"|(?:^|_)(?:SAS|PASS|AUTH)(?:_|$)",  # not PWD alone: the working directory
    _I,
)

# A name that says its value is secret (query parameters, DSN and connection-string pairs).
# ...; also a name with `key` or `auth` as a word (auth_key, subscription-key; not monkey, oauth)
# (Quantifiers are bounded: mask runs on every line printed, and an unbounded lazy prefix
# before a fixed word is quadratic on a long line repeating that word.)
_NAME = (
    r"(?:[\w.-]{0,64}?(?:passw(?:or)?d|passphrase|secret|token|credential|signature|api[_-]?key"
    r"|access[_-]?key|account[_-]?key|private[_-]?key|shared[_-]?access[_-]?key)[\w.-]{0,64}"
    r"|(?:[\w.-]{0,64}[_.-])?(?:key|auth|authorization)(?![a-z0-9])[\w.-]{0,64}|pwd|sig|apikey)"
)
_SCHEME = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,32}://"  # from a word's start: linear
_USER = r"[^:/?#@\s]*"
_HOST_FOLLOWS = r"(?=[\w\[])"

# scheme://user:password@ (greedy: the password may hold '@' and '/'; not a host:port/path;
# the user may hold '@', an e-mail address: scheme://me@corp.com:password@host)
_USERINFO = re.compile(rf"(?P<head>{_SCHEME}[^:/?#\s]{{0,256}}:)(?!\d{{1,5}}(?:[/?#]|$))\S*@")
# ... and one a URL parser would read as a port and a path (1234/abc, 2024#abc), when a host
# follows the '@' (dotted, with a port, or [IPv6]; not a registry alias: host:5000/gen@champion)
_HOST_LIKE = r"(?:\[|[\w-]+(?:\.[\w-]+)+|[\w.-]+:\d)"
_USERINFO_DIGITS = re.compile(rf"(?P<head>{_SCHEME}{_USER}:)\d{{1,5}}[/?#][^\s@]*@(?={_HOST_LIKE})")
# ... and with any host after a database's scheme: SQLAlchemy (MLflow's and Optuna's stores) and
# database clients read up to the last '@' as userinfo, and no alias follows a database's path
_DB_SCHEME = (
    r"(?<![A-Za-z0-9+.-])(?:postgres(?:ql)?|mysql|mariadb|mssql|oracle|cockroachdb|redshift"
    r"|snowflake|mongodb|redis|rediss|amqps?)(?:\+[\w.-]{1,32})?://"
)
_DB_USERINFO_DIGITS = re.compile(
    rf"(?P<head>{_DB_SCHEME}{_USER}:)\d{{1,5}}[/?#]\S*@{_HOST_FOLLOWS}", _I
)
# user:password@host with no scheme (a command line, ssh, a proxy setting), when a host
# follows (dotted, with a port, or [IPv6]); not mailto:name@host, not image:tag@sha256:digest.
# (A password holding '@', ':' or '/' is masked only in a URL with a scheme, or once known.)
_BARE_USERINFO = re.compile(
    rf"(?P<head>(?<![\w.:/@%+-])(?![Mm][Aa][Ii][Ll][Tt][Oo]:)[A-Za-z_][\w.-]{{0,63}}:)"
    rf"[^\s@/:'\"]{{1,256}}@(?!sha\d+:)(?={_HOST_LIKE})"
)
# scheme://user:pass word@host (a space in the password; no '/' in it)
_USERINFO_SPACED = re.compile(
    rf"(?P<head>{_SCHEME}{_USER}:)(?!\d+(?:[/\s]|$))[^/\n@]*?\s[^/\n]*?@{_HOST_FOLLOWS}"
)
# scheme://TOKEN@host: a user part this long (no password) is a token (git@ stays, postgres@ not)
_USER_TOKEN = re.compile(rf"(?P<head>{_SCHEME})[^:/?#@\s]{{8,}}@{_HOST_FOLLOWS}")
# in _secrets_in_text: where a URL starts; a host after '@'; a port where a password would be
_SCHEME_START = re.compile(_SCHEME)
_DB_SCHEME_START = re.compile(_DB_SCHEME, _I)
_HOST_AFTER_AT = re.compile(r"[\w\[][\w.\-\[\]:]*(?:[/?#\s]|$)")
_PORT = re.compile(r"\d{1,5}(?:[/?#]|$)")
_HOST_LIKE_AT = re.compile(_HOST_LIKE)
# name=value in a query string, a DSN, a connection string or free text
_PAIR = re.compile(
    rf"(?P<head>(?<![\w.-]){_NAME}\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s&#;'\"<>]+)", _I
)
# the same inside a percent-encoded URL: %3Ftoken%3Dvalue%26...
_PAIR_ENCODED = re.compile(
    rf"(?P<head>(?:%3F|%26|%3B)(?:{_NAME})%3D)(?P<value>(?:(?!%26|%23|%3B)[^&#;\s'\"<>])+)", _I
)
# password: value (YAML, log lines) and --password value (a command line), for the names
# that only ever mean a secret
_SECRET_WORD = r"(?:passw(?:or)?d|passphrase|secret)"  # not "secrets", not "--password-stdin"
_VALUE = r"\"[^\"]*\"|'[^']*'|[^\s'\"]\S*"
_COLON_PAIR = re.compile(
    rf"(?P<head>(?<![\w.-])(?:[\w.-]{{0,32}}[_.-])?{_SECRET_WORD}(?:[_.-][\w.-]{{0,32}})?"
    rf"(?![\w.-])\s*:\s+)(?P<value>{_VALUE})",
    _I,
)
_FLAG_PAIR = re.compile(
    rf"(?P<head>(?<!\S)--?(?:[\w-]{{0,32}}[_-])?{_SECRET_WORD}(?![\w-])\s+)(?P<value>{_VALUE})", _I
)
# Authorization: Bearer TOKEN (HTTP headers, curl lines), and a bare Bearer token
_AUTH_HEADER = re.compile(
    r"(?P<head>\bauthorization\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?)"
    r"(?P<value>[^\s,;'\"]+)",
    _I,
)
_BEARER = re.compile(r"(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{16,})", _I)
# Tokens whose shape alone says what they are: AWS access key ids, GitHub and Slack tokens
_TOKEN_SHAPES = re.compile(
    r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,})\b"
)
# 'password': 'value' (a dict's repr, JSON)
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_QUOTED_PAIR = re.compile(rf"(?P<head>(?P<q>[\"']){_NAME}(?P=q)\s*:\s*)(?P<value>{_QUOTED})", _I)

_lock = threading.RLock()
_secrets: set[str] = set()
_known: re.Pattern[str] | None = None  # all registered secrets, every spelling; None: none
_environment_scanned = False


def mask(text: str) -> str:
    """text with every secret it holds replaced by ***."""
    if not _environment_scanned:
        add_environment(os.environ)
    known = _known
    if known is not None:
        text = known.sub(MASK, text)
    if "://" in text:
        text = _USERINFO.sub(rf"\g<head>{MASK}@", text)
        text = _USERINFO_DIGITS.sub(rf"\g<head>{MASK}@", text)
        text = _DB_USERINFO_DIGITS.sub(rf"\g<head>{MASK}@", text)
        text = _USERINFO_SPACED.sub(rf"\g<head>{MASK}@", text)
        text = _USER_TOKEN.sub(rf"\g<head>{MASK}@", text)
    if "@" in text and ":" in text:
        text = _BARE_USERINFO.sub(rf"\g<head>{MASK}@", text)
    if "=" in text:
        text = _PAIR.sub(_masked_value, text)
    if "%" in text:
        text = _PAIR_ENCODED.sub(rf"\g<head>{MASK}", text)
    if ":" in text:
        text = _QUOTED_PAIR.sub(_masked_value, text)
        text = _COLON_PAIR.sub(_masked_value, text)
        text = _AUTH_HEADER.sub(_masked_value, text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    text = _FLAG_PAIR.sub(_masked_value, text)
    text = _BEARER.sub(_masked_value, text)
    return text


def _masked_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" and len(value) > 1 and value[-1] == value[0] else ""
    return f"{match['head']}{quote}{MASK}{quote}"


def mask_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """values with every string masked (for run params and tags); values other than numbers,
    booleans and None become their masked text, as MLflow would store them."""
    return {k: v if v is None or isinstance(v, int | float) else mask(str(v))
            for k, v in values.items()}  # fmt: skip


def add_secret(value: str | None) -> None:
    """Mask value (and its percent-decoded forms, and each of its lines) wherever it appears."""
    if not value:
        return
    forms = {f.strip() for f in (value, unquote(value), unquote_plus(value), *value.splitlines())}
    new = {f for f in forms - _secrets if _worth_masking(f)}
    if not new:
        return
    global _known
    with _lock:
        _secrets.update(new)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial masks
        _known = re.compile("|".join("".join(map(_char_spellings, s)) for s in ordered))


def add_secrets_in(value: Any) -> None:
    """Register the secrets in value's strings: URL passwords, values of secret-named pairs
    (`?token=...`, `password=...`). Walks dataclasses, mappings and sequences (a config)."""
    if isinstance(value, str):
        for secret in _secrets_in_text(value):
            add_secret(secret)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            add_secrets_in(getattr(value, field.name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and isinstance(item, str) and _SECRET_ENV.search(key):
                add_secret(item)
            add_secrets_in(item)
    elif isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        for item in value:
            add_secrets_in(item)


def add_environment(environ: Mapping[str, str]) -> None:
    """Register the secrets of an environment: the value of every variable whose name says
    secret, and the secrets inside every value (URLs with passwords, connection strings)."""
    global _environment_scanned
    _environment_scanned = True
    for name, value in list(environ.items()):
        if value and secret_name(name):
            add_secret(value)
        add_secrets_in(value)
        if name.endswith("_PASSWORD") and value:  # basic auth's base64 of user:password
            user = environ.get(f"{name.removesuffix('PASSWORD')}USERNAME", "")
            add_secret(base64.b64encode(f"{user}:{value}".encode()).decode())


def secret_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a secret (PGPASSWORD,
    AWS_SECRET_ACCESS_KEY, MLFLOW_TRACKING_TOKEN, ...)."""
    return bool(_SECRET_ENV.search(name))


def holds_secret(value: str) -> bool:
    """Whether a value holds a secret: a registered one, a URL's password, a secret pair."""
    return mask(value) != value or any(_worth_masking(v) for v in _secrets_in_text(value))


def _worth_masking(value: str) -> bool:
    if len(value) < MIN_SECRET_LENGTH or value.lower() in _TRIVIAL or value == MASK:
        return False
    return not (value.isdigit() and len(value) < 6)  # ports, counts, seconds


def _secrets_in_text(text: str) -> set[str]:
    """Passwords of the URLs in text (each split a user might have meant when the password
    holds '@' unencoded), long user-only userinfo, values of secret-named pairs."""
    found: set[str] = set()
    for scheme in _SCHEME_START.finditer(text):
        rest = text[scheme.end() :].split("\n", 1)[0]
        database = _DB_SCHEME_START.match(text, scheme.start())
        for at in (i for i, c in enumerate(rest) if c == "@"):
            userinfo, after = rest[:at], rest[at + 1 :]
            if "://" in userinfo or not _HOST_AFTER_AT.match(after):
                continue
            user, colon, password = userinfo.partition(":")
            if colon and (not _PORT.match(password) or _HOST_LIKE_AT.match(after) or database):
                found.add(password)
            elif not colon and len(user) >= 16:
                found.add(user)
    for pattern in (_PAIR, _QUOTED_PAIR, _COLON_PAIR, _FLAG_PAIR, _AUTH_HEADER, _BEARER):
        for pair in pattern.finditer(text):
            value = pair["value"]
            found.add(value[1:-1] if value[0] in "\"'" and value[-1] == value[0] else value)
    for pair in _PAIR_ENCODED.finditer(text):
        found.add(unquote(pair["value"]))
    return found


def _hex(byte: int) -> str:
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{byte:02X}")


def _char_spellings(char: str) -> str:
    """A regex matching char however a secret holding it is spelled: raw, percent-encoded (once
    or twice, either hex case), '+' for a space, backslash- or JSON-escaped."""
    if char.isascii() and char.isalnum():
        return char
    forms = [re.escape(char), "".join(f"%(?:25)?{_hex(b)}" for b in char.encode())]
    if char == " ":
        forms.append(r"\+")
    if char in "\"'\\/":
        forms.append(re.escape("\\" + char))
    if not char.isascii() or not char.isprintable():
        if ord(char) <= 0xFFFF:  # JSON's \uXXXX
            forms.append(r"\\u" + "".join(_hex(b) for b in ord(char).to_bytes(2, "big")))
        forms.append(re.escape(char.encode("unicode_escape").decode()))  # Python's repr
    return "(?:" + "|".join(forms) + ")"
