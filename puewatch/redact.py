"""Secrets out of everything puewatch shows: the one place that decides what is hidden.

- `redact_url(url)`: a URL as it may be shown: the password of `user:password@` and the
  values of credential query parameters (`p=`, `password=`, `token=`, ...) become `***`.
- `redact_text(text)`: the same for every URL and `name=value` credential in free text (an
  exception's message, a log line), and every value registered with `register_secret`.
- `register_secret(value)`: a token or password read from a config or a file, hidden from
  then on wherever it appears.
- `RedactingFilter`: a logging filter that passes each record through `redact_text`, the
  net under every log line (`install_log_filter()` puts it on the root handlers).

Call sites that show a URL call `redact_url` themselves; the filter catches what they cannot
see (a library's exception that quotes a URL).
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse

__all__ = ["MASK", "RedactingFilter", "install_log_filter", "redact_text", "redact_url", "register_secret"]

MASK = "***"
# Query parameters that carry credentials: InfluxDB v1 `u=&p=`, tokens, keys, signatures.
SECRET_PARAMS = frozenset({
    "p", "password", "passwd", "pwd", "token", "access_token", "auth_token", "api_key", "apikey", "key",
    "secret", "client_secret", "signature", "sig",
})
# Values shorter than this are not registered: masking "1" everywhere would garble every message.
MIN_SECRET_CHARS = 6

_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_NAMES = "|".join(sorted(SECRET_PARAMS, key=len, reverse=True))
_LONG_NAMES = "|".join(sorted((n for n in SECRET_PARAMS if len(n) >= 5), key=len, reverse=True))
# In a query: every credential parameter. In free text: after ? & ; (a query quoted in a message),
# or a long name standing alone (`token=...`); a bare `p=` in text is too often a field (`p=1.5`).
_QUERY_RE = re.compile(r"(?i)(^|[&;])(" + _NAMES + r")=([^&;#]*)")
_TEXT_RE = re.compile(r"(?i)([?&;])(" + _NAMES + r")=([^&;#\s'\"]*)|(?<![\w-])(" + _LONG_NAMES + r")=([^&;#\s'\"]+)")
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Hide `value` (a token, a password) in every text passed through `redact_text` from now on."""
    if value and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _secrets.add(value)


def redact_url(url: str) -> str:
    """`url` with the password of its userinfo and its credential query values masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
    query = _QUERY_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """`text` with every URL passed through `redact_url`, credential parameters and registered secrets masked."""
    if "://" in text:
        text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    if "=" in text:
        text = _mask_text(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_text(text: str) -> str:
    def mask(m: re.Match) -> str:
        return f"{m.group(1)}{m.group(2)}={MASK}" if m.group(2) else f"{m.group(4)}={MASK}"

    return _TEXT_RE.sub(mask, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its exception text) through `redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 (a bad format string: leave it to the handler to report)
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_filter() -> None:
    """Put one RedactingFilter on every handler of the root logger (after logging.basicConfig)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
