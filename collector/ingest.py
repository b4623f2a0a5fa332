"""InfluxDB-compatible write endpoints: what agents and Telegraf send to the collector.

    POST /api/v2/write?bucket=&org=&precision=ns|us|ms|s     Authorization: Token T | Bearer T
    POST /write?db=&rp=&precision=n|ns|u|ms|s|m|h              u=&p=T, Basic (password T), Token, Bearer
    GET  /ping     204, as InfluxDB
    GET  /health   200 {"status": "pass", ...}
    GET  /ready    200 {"status": "ready", ...}, as InfluxDB 2.x
    GET|POST /query  v1 clients' connect statements only: `SHOW DATABASES`, `CREATE DATABASE x`
                     (a no-op success); anything else 400 saying where reads go

The server is `asyncio.start_server` with a small, strict HTTP/1.1 reader (keep-alive,
`Content-Length` or chunked bodies, `Expect: 100-continue`, gzip), standard library
only: the collector adds no web framework for four routes. Answers follow InfluxDB so
its clients work unchanged: 204 on success, sent only once the sink has the lines (the
collector's: on disk, fsync'd, collector/README.md); 503 with Retry-After when the sink
cannot take them now (spool full, disk full: the sender keeps them); malformed lines 400 `{"code":"invalid",
"message":"partial write: unable to parse '...': fault (line N); ... dropped=N (M line(s)
accepted)"}` while the good lines of the body are still accepted (InfluxDB's partial write);
lines whose time is more than `max_clock_skew_s` ahead of the collector's clock (or, when
set, `max_age_s` behind it) are dropped the same way ("refused '...': time
2027-12-03T21:00:00Z is 365 days ahead of the collector's clock (tolerance 300 s) (line N)"); 401 without a valid
token; 413 for a body over `max_body_bytes` (checked against Content-Length before
reading, while reading chunks and while decompressing, so a gzip bomb costs at most
that much memory); 404, 405; v1 errors as `{"error": "..."}`.
`bucket`, `org`, `db` and `rp` are accepted and ignored: the collector writes to the
store it is configured with.

Slow or endless clients are cut off: the request head must arrive within
`header_timeout_s` of its first byte, the body within `body_timeout_s`, and an idle
keep-alive connection is closed after `idle_timeout_s`. Until a connection has presented a
valid token it has `unauthenticated_timeout_s` for its request head and may be evicted to
make room: sockets opened without a token never crowd out the agents (`_Connections`;
collector/README.md, Connection limits).

Tokens identify writers. The token file (or systemd credential, `$CREDENTIALS_DIRECTORY/
<name>`, same format) has one writer per line, `name token [scope]`; `#` starts a comment.
A presented token is compared, in constant time, with every token (SHA-256 digests through
`hmac.compare_digest`, no early exit), so timing reveals neither a token nor which writer
matched. The scope (collector.scopes: an agent's node, a feeder's meters) decides which
series the writer may write: a body with any series out of scope is refused whole, 403
naming the series (`{"code":"forbidden",...}`, v1 `{"error":...}`), nothing stored. The
writer's name goes to the sink with its lines.

The writers (tokens and their scopes) are one value, swapped whole by `replace_writers` (the
collector's SIGHUP re-reads the token source): each request takes the writers of the moment
its head arrived and is authorised and scoped by them to its end, never by a mix of two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import stat
import time
import zlib
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from puewatch import __version__
from puewatch.collector.fieldtypes import FieldTypes
from puewatch.collector.lineparse import LineParser, Point, Subscription, TimeWindow
from puewatch.collector.scopes import AGENT, Scope, WriteScopes, parse_scope
from puewatch.config import setting
from puewatch.errors import ConfigError

__all__ = ["IngestConfig", "IngestServer", "IngestStats", "Sink", "Tokens", "ssl_context"]

log = logging.getLogger("puewatch.collector.ingest")

MAX_HEAD_BYTES = 64 * 1024
MAX_ERRORS_IN_REPLY = 10
LINGER_S = 1.0  # how long input is discarded after an error reply that closes
MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with extensions, or a trailer field
_V2_PRECISIONS = ("ns", "us", "ms", "s")
# InfluxDB 1.x's /write names. influxd 1.6.7 reads any other value (`us` included) as nanoseconds,
# storing times a thousand times off: refused here instead.
_V1_PRECISIONS = ("n", "ns", "u", "ms", "s", "m", "h")


@dataclass
class IngestConfig:
    """The InfluxDB-compatible write endpoint for agents and Telegraf."""

    listen: str = setting("127.0.0.1", doc="Address to listen on (`0.0.0.0` or `::` for every interface).")
    port: int = setting(8087, min=0, max=65535, doc="TCP port (0: any free port, for tests).")
    tls_cert: str | None = setting(None, doc="PEM certificate (chain) file; with `tls_key`, the endpoint speaks HTTPS only.")
    tls_key: str | None = setting(None, doc="PEM private key file for `tls_cert`.")
    token_file: str | None = setting(
        None,
        doc="File of tokens, one `name token [scope]` per line (`#` comments; scope `agent` (the default: node `name`), "
        "`agent:NODE-GLOB,...` or `feeder:METER,...`, see collector/README.md); mode 600. `puewatch token add` writes it.",
    )
    token_credential: str | None = setting(
        None, doc="Name of a systemd credential (`LoadCredential=`) in the token file format, read from `$CREDENTIALS_DIRECTORY`."
    )
    max_body_bytes: int = setting(
        32 * 1024 * 1024,
        min=1024,
        max=1024**3,
        doc="Largest request body, before and after gzip decompression (413 above it).",
    )
    max_connections: int = setting(
        1024, min=1, max=100_000,
        doc="Open connections in all. At the cap a new connection evicts the oldest unauthenticated one; when every "
        "open connection is authenticated, it is closed at once.",
    )
    max_connections_per_client: int = setting(
        64, min=1, max=100_000,
        doc="Unauthenticated connections from one client address; beyond it that address's oldest one is evicted. "
        "Authenticated connections do not count here (many agents may share an address behind NAT): they count "
        "against max_connections_per_agent.",
    )
    max_connections_per_agent: int = setting(
        16, min=1, max=100_000,
        doc="Open connections authenticated with one token. A request that would open one more is answered 429 "
        "(the agents retry with backoff) and its connection closed.",
    )
    max_unauthenticated_connections: int = setting(
        128, min=1, max=100_000,
        doc="Connections that have not yet presented a valid token, at once; beyond it the oldest is evicted (idle "
        "ones first), so sockets opened without a token never crowd out the agents.",
    )
    unauthenticated_timeout_s: float = setting(
        5.0, min=0.1, max=600.0,
        doc="A connection that has not yet presented a valid token must send a whole request head within this "
        "long of opening (or of its last answer); otherwise it is closed.",
    )
    header_timeout_s: float = setting(10.0, min=0.1, max=600.0, doc="Time allowed for a request head, from its first byte.")
    body_timeout_s: float = setting(60.0, min=0.1, max=3600.0, doc="Time allowed for a request body.")
    idle_timeout_s: float = setting(60.0, min=0.1, max=3600.0, doc="An idle keep-alive connection is closed after this long.")
    max_clock_skew_s: float = setting(
        300.0, min=0.0, max=10 * 365 * 86400.0,
        doc="Lines whose time is further than this ahead of the collector's clock are refused (400 partial write, "
        "counted), the rest of the body kept: a node whose clock jumped ahead must not write the future. 0: off.",
    )
    max_age_s: float = setting(
        0.0, min=0.0, max=100 * 365 * 86400.0,
        doc="Lines whose time is further than this behind the collector's clock are refused the same way. 0 (the "
        "default): off, because agents ship their spool after an outage; set it above the longest outage the "
        "agents' spools cover to refuse a clock that fell back (e.g. to 1970).",
    )

    pace_backlog_bytes: int = setting(
        8 * 1024 * 1024, min=0, max=1024**4,
        doc="While the store is up but writes behind ingest by more than this (bytes acknowledged and not yet "
        "stored), an answer waits until the store catches up, up to pace_max_s: clients slow to the store's pace "
        "instead of the spool filling until ingest refuses (503). 0: off.",
    )
    pace_max_s: float = setting(
        2.0, min=0.0, max=60.0,
        doc="Longest wait of one answer for the store to catch up (keep it well under the clients' timeouts: "
        "agents 10 s, Telegraf 5 s). The batch is on disk before the wait; the wait only delays the 204.",
    )

    def check(self) -> list[tuple[str, str]]:
        if (self.tls_cert is None) != (self.tls_key is None):
            return [("tls_cert", "tls_cert and tls_key go together: set both for HTTPS, or neither")]
        if self.token_file is None and self.token_credential is None:
            return [("token_file", "is required (or token_credential): every writer needs a token")]
        return []


# -- tokens -------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
MIN_TOKEN_CHARS = 16


class Tokens:
    """Writers' tokens and scopes; `agent_for(token)` compares with all of them in constant time.

    `scopes`: writer name -> Scope; a writer without one is an agent for the node of its name.
    """

    def __init__(self, tokens: dict[str, str], scopes: dict[str, Scope] | None = None) -> None:
        if not tokens:
            raise ConfigError("no agent tokens configured")
        self._digests = [(name, hashlib.sha256(tok.encode()).digest()) for name, tok in tokens.items()]
        scopes = scopes or {}
        self.scopes = {name: scopes.get(name) or Scope(AGENT) for name in tokens}

    def __len__(self) -> int:
        return len(self._digests)

    def changes_from(self, old: Tokens) -> dict[str, list[str]]:
        """What a reload changed, by writer name (never a token): `added`, `removed`, `new token` (the same
        writer with another token: a rotation) and `new scope` (its scope as `old -> new`, in the token file's
        words); empty lists where nothing changed of that kind."""
        mine, theirs = dict(self._digests), dict(old._digests)
        both = sorted(mine.keys() & theirs.keys())
        return {
            "added": sorted(mine.keys() - theirs.keys()),
            "removed": sorted(theirs.keys() - mine.keys()),
            "new token": [n for n in both if not hmac.compare_digest(mine[n], theirs[n])],
            "new scope": [f"{n} {old.scopes[n].text(n)} -> {self.scopes[n].text(n)}" for n in both
                          if old.scopes[n] != self.scopes[n]],
        }

    def agent_for(self, token: str) -> str | None:
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for name, digest in self._digests:  # every comparison runs, whichever matches
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found

    @classmethod
    def parse(cls, text: str, source: str) -> Tokens:
        scopes: dict[str, Scope] = {}
        return cls(_parse_tokens(text, source, scopes), scopes)

    @classmethod
    def load(cls, config: IngestConfig) -> Tokens:
        """Tokens from the token file and/or the systemd credential (both: merged)."""
        sources: list[Path] = []
        if config.token_file:
            sources.append(Path(config.token_file))
        if config.token_credential:
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                raise ConfigError(
                    f"token_credential {config.token_credential!r}: $CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=, or use token_file)"
                )
            sources.append(Path(cred_dir) / config.token_credential)
        merged: dict[str, str] = {}
        scopes: dict[str, Scope] = {}
        for path in sources:
            try:
                st = path.stat()
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"{path}: token file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read token file: {getattr(exc, 'strerror', None) or exc}") from None
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("%s: token file is readable by group or others (mode %o); chmod 600 it", path, stat.S_IMODE(st.st_mode))
            for name, token in _parse_tokens(text, str(path), scopes).items():
                if name in merged:
                    raise ConfigError(f"{path}: agent {name!r} is also defined in another token source")
                merged[name] = token
        return cls(merged, scopes)


def _parse_tokens(text: str, source: str, scopes: dict[str, Scope], errors: list[str] | None = None) -> dict[str, str]:
    """`name token [scope]` lines: name -> token; each line's scope goes into `scopes` (a line
    without one: an agent). Errors name the file and line, never the name or token: with the
    columns swapped, the "name" is the token. With `errors` (--check-config) every bad line is
    listed there and skipped instead of the first one raised."""

    class _Skip(Exception):
        pass

    def problem(message: str) -> None:
        if errors is None:
            raise ConfigError(message)
        errors.append(message)
        raise _Skip

    tokens: dict[str, str] = {}
    seen: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            name, token = _token_line(line, source, lineno, tokens, seen, line_of, scopes, problem)
        except _Skip:
            continue
        tokens[name] = token
        seen[token] = name
        line_of[name] = lineno
    if not tokens and not (errors and errors[-1].startswith(f"{source}:")):
        if errors is None:
            raise ConfigError(f"{source}: no tokens (expected lines of `name token`)")
        errors.append(f"{source}: no tokens (expected lines of `name token`)")
    return tokens


def _token_line(line: str, source: str, lineno: int, tokens: dict[str, str], seen: dict[str, str],
                line_of: dict[str, int], scopes: dict[str, Scope], problem) -> tuple[str, str]:
    """One `name token [scope]` line, checked; `problem(message)` raises."""
    parts = line.split()
    if len(parts) not in (2, 3):
        # (No word is quoted: one may be a token.)
        inline = any(p.startswith("#") for p in parts[2:])
        problem(f"{source}:{lineno}: expected `name token`, got {len(parts)} word(s) (and an optional scope)"
                + ("; a comment must be a line of its own (a `#` after the token is read as a word)" if inline else ""))
    name, token = parts[:2]
    if not _NAME_RE.fullmatch(name):
        problem(f"{source}:{lineno}: the agent name (first word) must be 1-128 of A-Z a-z 0-9 _ . : @ - "
                "(lines are `name token`)")
    if len(token) < MIN_TOKEN_CHARS:
        problem(f"{source}:{lineno}: the token (second word) is shorter than {MIN_TOKEN_CHARS} characters "
                "(lines are `name token`: are the columns swapped?)")
    if name in tokens:
        problem(f"{source}:{lineno}: the agent name is listed already on line {line_of[name]}")
    if len(parts) == 3:
        try:
            scopes[name] = dataclasses.replace(parse_scope(parts[2]), where=f"{source}:{lineno}")
        except ValueError as exc:
            problem(f"{source}:{lineno}: the scope (third word): {exc}")
    if token in seen:
        problem(f"{source}:{lineno}: the token is the same as on line {line_of[seen[token]]}; "
                "each agent needs its own")
    return name, token


def ssl_context(config: IngestConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: file not found: {exc.filename or config.tls_cert}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: cannot load tls_cert {config.tls_cert} / tls_key {config.tls_key}: {exc}") from None
    return ctx


# -- the sink and the counters ------------------------------------------------------------------


class Sink(Protocol):
    """Where accepted lines go (collector/DESIGN.md, Ingest)."""

    subscribed: Subscription  # measurement names, or measurement -> required field keys

    def accept(self, agent: str, body: bytes, lines: int, points: list[Point]) -> Awaitable[None] | None: ...
    # An awaitable is awaited before the answer (204 once it is done); an exception with a
    # `retry_after_s` attribute (stores.spool.Backpressure) is answered 503 with Retry-After.
    # Optional: `async def pace(self) -> float`, awaited after an accepted body and before its 204
    # (flow control: see collector/pacing.py); returns the seconds it waited.


@dataclass
class IngestStats:
    """Counters for /metrics."""

    requests: Counter = field(default_factory=Counter)  # by HTTP status
    lines_accepted: int = 0
    parse_errors: int = 0  # bad lines (dropped, reported to the client)
    store_refused: int = 0  # well-formed lines the store would refuse: field type conflict, unsigned, key length
    clock_skew_refused: int = 0  # lines refused for a time outside max_clock_skew_s / max_age_s (reported to the client)
    retention_refused: int = 0  # lines refused as older than the store's raw retention (reported to the client)
    bytes_received: int = 0  # request bodies as sent (compressed)
    bytes_decompressed: int = 0
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0  # closed at once: over a cap with no unauthenticated connection to evict
    connections_evicted: int = 0  # unauthenticated connections closed to make room for a new one
    connections_unauthenticated: int = 0  # open now, no valid token presented yet
    timeouts: int = 0  # clients cut off by a header or body timeout
    scope_refused_lines: int = 0  # well-formed lines of bodies refused whole for a series out of the writer's scope (403)
    sink_errors: int = 0
    backpressure: int = 0  # requests answered 503 + Retry-After: the sink could not take them (nothing acknowledged)
    paced: int = 0  # accepted requests whose 204 waited for the store to catch up (collector/pacing.py)
    paced_seconds: float = 0.0


# -- HTTP ---------------------------------------------------------------------------------------

_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_V2_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    411: "length required",
    413: "request too large",
    415: "unsupported media type",
    429: "too many requests",
    500: "internal error",
    501: "not implemented",
    503: "unavailable",
}
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name
_ROUTES = {"/api/v2/write": "POST", "/write": "POST", "/ping": "GET", "/health": "GET", "/ready": "GET", "/query": "GET"}


# Retry-After of the per-agent connection cap's 429: the agent's own connections free up as
# soon as its requests in flight are answered, so a short wait is enough.
CONNECTION_RETRY_AFTER_S = 1


class _Reply(Exception):
    """Answer the request with this status and message (and maybe close the connection)."""

    def __init__(self, status: int, message: str, close: bool = False, retry_after_s: int | None = None,
                 extra: dict | None = None) -> None:
        super().__init__(message)
        self.extra = extra  # more keys for the JSON answer (InfluxDB clients ignore them)
        self.status = status
        self.message = message
        self.close = close
        self.retry_after_s = retry_after_s


class _Request:
    __slots__ = ("method", "path", "query", "version", "headers", "keep_alive", "received_ns", "api", "writers")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


def _parse_head(head: bytes) -> _Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise _Reply(400, "invalid request head", close=True) from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _Reply(400, f"malformed request line {lines[0][:100]!r}", close=True)
    req = _Request()
    req.method, target, req.version = parts
    if req.version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _Reply(505, f"unsupported protocol {req.version[:20]!r}", close=True)
    split = urlsplit(target)
    req.path = split.path
    req.query = split.query
    headers = req.headers
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_RE.fullmatch(name):
            raise _Reply(400, f"malformed header line {line[:100]!r}", close=True)
        name = name.lower()
        value = value.strip(" \t")
        if name in headers:
            if name in ("content-length", "authorization", "content-encoding", "transfer-encoding", "host"):
                raise _Reply(400, f"duplicate {name} header", close=True)
            headers[name] += ", " + value
        else:
            headers[name] = value
    conn = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    req.keep_alive = ("close" not in conn) if req.version == "HTTP/1.1" else ("keep-alive" in conn)
    return req


def _json(status: int, message: str, api: str, extra: dict | None = None) -> bytes:
    if api == "v1":
        return json.dumps({"error": message, **(extra or {})}).encode()
    return json.dumps({"code": _V2_CODES.get(status, "invalid"), "message": message, **(extra or {})}).encode()


# -- connection limits ----------------------------------------------------------------------------


class _Conn:
    """One open connection, as the limits see it."""

    __slots__ = ("peer", "transport", "agent", "idle")

    def __init__(self, peer: str, transport: asyncio.BaseTransport) -> None:
        self.peer: str | None = peer  # None once forgotten
        self.transport = transport
        self.agent: str | None = None  # whose valid token a request on it presented
        self.idle = True  # waiting for the first byte of a request

    @property
    def authenticated(self) -> bool:
        return self.agent is not None


class _Connections:
    """The open connections, per client address, and the unauthenticated ones oldest first.

    Caps (IngestConfig): `max_connections` in all, `max_unauthenticated_connections`, and
    `max_connections_per_client` unauthenticated ones per address. A new connection over a cap
    evicts the oldest unauthenticated connection that counts against that cap (an idle one
    before one that is sending a head); only when there is none is the new connection refused.
    Authenticated connections count per agent (`max_connections_per_agent`), not per address:
    many agents may share one address behind NAT. An agent's
    connection is unauthenticated only from its opening to the end of its first request head,
    so a flood of idle sockets is evicted before any agent's connection is, and a connection
    that shows a valid token is never evicted.
    """

    def __init__(self) -> None:
        self.per_peer: Counter = Counter()  # unauthenticated connections per address
        self.per_agent: Counter = Counter()  # authenticated connections per agent
        self.unauthenticated: dict[_Conn, None] = {}  # insertion order: oldest first

    def admit(self, conn: _Conn, cfg: IngestConfig, stats: IngestStats) -> bool:
        if self.per_peer[conn.peer] >= cfg.max_connections_per_client and not self._evict(stats, conn.peer):
            return False
        if len(self.unauthenticated) >= cfg.max_unauthenticated_connections and not self._evict(stats):
            return False
        if stats.connections_open >= cfg.max_connections and not self._evict(stats):
            return False
        self.per_peer[conn.peer] += 1
        self.unauthenticated[conn] = None
        stats.connections_open += 1
        stats.connections_unauthenticated += 1
        return True

    def authenticate(self, conn: _Conn, agent: str, cfg: IngestConfig, stats: IngestStats) -> bool:
        """Move a connection to `agent`'s; False when the agent holds max_connections_per_agent already."""
        if self.per_agent[agent] >= cfg.max_connections_per_agent:
            return False
        self._forget_unauthenticated(conn, stats)
        conn.agent = agent
        self.per_agent[agent] += 1
        return True

    def remove(self, conn: _Conn, stats: IngestStats) -> None:
        """Forget a closed connection (once: an evicted one was forgotten when it was evicted)."""
        if conn.peer is None:
            return
        if conn.agent is None:
            self._forget_unauthenticated(conn, stats)
        else:
            _decrement(self.per_agent, conn.agent)
        stats.connections_open -= 1
        conn.peer = None

    def _forget_unauthenticated(self, conn: _Conn, stats: IngestStats) -> None:
        if self.unauthenticated.pop(conn, False) is None:
            stats.connections_unauthenticated -= 1
            _decrement(self.per_peer, conn.peer)

    def _evict(self, stats: IngestStats, peer: str | None = None) -> bool:
        victim = None
        for c in self.unauthenticated:
            if peer is not None and c.peer != peer:
                continue
            if c.idle:
                victim = c
                break
            if victim is None:
                victim = c
        if victim is None:
            return False
        self.remove(victim, stats)
        victim.transport.abort()  # its task sees the connection lost and ends
        stats.connections_evicted += 1
        return True


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Before closing on an error reply, let the client read it: closing with unread input makes
    the kernel send a reset that can destroy the reply in flight (a client still sending a bad
    body would see only "connection reset"). So: end our side, then discard what the client
    still sends, for at most LINGER_S (as nginx's lingering_close)."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
        pass


def _raise_open_files_limit(max_connections: int) -> None:
    """Raise the soft limit on open files towards the hard one (as Go's runtime does): every
    connection is a file, and at the soft limit (often 1024) accept() fails before the
    connection caps can act. Warn when even the hard limit leaves too little room."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + 256  # the store, the spool, SNMP sockets, the metrics endpoint
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(hard, max(wanted, soft))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("ingest: the open-files limit is %d, below max_connections + 256 (%d); raise LimitNOFILE= "
                    "(or ulimit -n) or lower max_connections", soft, wanted)


def _decrement(counter: Counter, key) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _peer_address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


class IngestServer:
    """The write endpoint. `await start()`, then `port` is the bound port; `await close()`."""

    def __init__(self, config: IngestConfig, tokens: Tokens, sink: Sink, scopes: WriteScopes | None = None, *,
                 types: FieldTypes | None = None, retention_s: float | None = None) -> None:
        """`scopes`: the site's rules (with its ingest meters); default: the tokens' scopes, no ingest meters.
        `types`: the field types lines are checked against (the store's: see collector/fieldtypes.py);
        `retention_s`: the store's raw retention (older lines are refused, not deleted at the next upkeep)."""
        self.config = config
        self.sink = sink
        self._pace = getattr(sink, "pace", None)
        self.replace_writers(tokens, scopes if scopes is not None else WriteScopes(tokens.scopes))
        self.types = types if types is not None else FieldTypes()
        window = TimeWindow(ahead_ns=round(config.max_clock_skew_s * 1e9), behind_ns=round(config.max_age_s * 1e9),
                            retention_ns=round((retention_s or 0) * 1e9))
        self.parser = LineParser(getattr(sink, "subscribed", frozenset()), window, self.types)
        self.stats = IngestStats()
        self.port: int | None = None
        # Wall-clock receive time of the request whose lines the sink is being handed (for
        # sinks that measure latency from arrival to store).
        self.received_ns = 0
        self._ssl = ssl_context(config)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conns = _Connections()
        self._warned: dict[str, float] = {}
        self._databases: list[str] = []  # names clients created (CREATE DATABASE is a no-op: one store)
        self._started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._started_ns = time.monotonic_ns()
        self._server_header = f"X-Influxdb-Build: puewatch\r\nX-Influxdb-Version: puewatch-{__version__}\r\n"

    def replace_writers(self, tokens: Tokens, scopes: WriteScopes) -> None:
        """From the next request on, these tokens and scopes (one assignment: a request sees the old pair
        or the new one, never a mix); requests already past their head finish under the old pair."""
        self._writers = (tokens, scopes)

    @property
    def tokens(self) -> Tokens:
        return self._writers[0]

    @property
    def scopes(self) -> WriteScopes:
        return self._writers[1]

    async def start(self) -> None:
        _raise_open_files_limit(self.config.max_connections)
        try:
            self._server = await asyncio.start_server(
                self._connection,
                self.config.listen,
                self.config.port,
                ssl=self._ssl,
                limit=1024 * 1024,  # stream buffer; the head is limited to MAX_HEAD_BYTES separately
                reuse_address=True,
                # A TLS handshake comes before any token: it gets the unauthenticated connections' time.
                ssl_handshake_timeout=min(self.config.header_timeout_s, self.config.unauthenticated_timeout_s) if self._ssl else None,
            )
        except OSError as exc:
            raise ConfigError(f"ingest: cannot listen on {self.config.listen}:{self.config.port}: {exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "ingest listening on %s://%s:%d (%d writer token(s): agents' and feeders')",
            "https" if self._ssl else "http",
            self.config.listen,
            self.port,
            len(self.tokens),
        )

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connections ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats = self.stats
        stats.connections_total += 1
        conn = _Conn(_peer_address(writer), writer.transport)
        if not self._conns.admit(conn, self.config, stats):
            stats.connections_refused += 1
            writer.transport.abort()
            return
        task = asyncio.current_task()
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError, OSError):
            pass  # the client went away (or was evicted)
        except asyncio.CancelledError:
            pass  # server closing
        finally:
            self._conns.remove(conn, stats)
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        while True:
            # Idle keep-alive: wait for the first byte of the next request. Until a connection has
            # shown a valid token, its whole next request head must come within the short
            # unauthenticated_timeout_s: idle sockets cost an attacker nothing to open.
            conn.idle = True
            wait_s = cfg.idle_timeout_s if conn.authenticated else min(cfg.idle_timeout_s, cfg.unauthenticated_timeout_s)
            deadline = loop.time() + wait_s
            try:
                async with asyncio.timeout_at(deadline):
                    first = await reader.readexactly(1)
            except TimeoutError:
                return
            except asyncio.IncompleteReadError:
                return  # closed between requests: normal
            conn.idle = False
            head_deadline = loop.time() + cfg.header_timeout_s
            if not conn.authenticated:
                head_deadline = min(head_deadline, deadline)
            api = "v2"
            try:
                try:
                    async with asyncio.timeout_at(head_deadline):
                        head = first + await reader.readuntil(b"\r\n\r\n")
                except TimeoutError:
                    self.stats.timeouts += 1
                    allowed_s = cfg.header_timeout_s if conn.authenticated else wait_s
                    raise _Reply(408, f"request head not received within {allowed_s:g} s", close=True) from None
                except asyncio.LimitOverrunError:
                    raise _Reply(431, "request head too large", close=True) from None
                if len(head) > MAX_HEAD_BYTES:
                    raise _Reply(431, f"request head larger than {MAX_HEAD_BYTES} bytes", close=True)
                req = _parse_head(head)
                req.received_ns = time.time_ns()
                req.writers = self._writers  # this request's tokens and scopes, whatever a reload does meanwhile
                api = "v1" if req.path in ("/write", "/query") else "v2"  # /query is InfluxDB 1.x's: Basic and u=&p= too
                req.api = api
                if not conn.authenticated and _ROUTES.get(req.path) == "POST":
                    self._authenticate(conn, req)
                keep = await self._handle(req, reader, writer)
            except _Reply as reply:
                await self._send(writer, reply.status, _json(reply.status, reply.message, api, reply.extra), keep=not reply.close,
                                 retry_after_s=reply.retry_after_s)
                if reply.close:
                    await _linger(reader, writer)
                    return
                continue
            if not keep:
                return

    def _authenticate(self, conn: _Conn, req: _Request) -> None:
        """A write's head with a valid token makes its connection authenticated (never evicted)."""
        agent = self._agent(req, parse_qs(req.query))
        if agent is None:
            return
        if not self._conns.authenticate(conn, agent, self.config, self.stats):
            self.stats.connections_refused += 1
            raise _Reply(429, f"agent {agent} holds {self.config.max_connections_per_agent} connections already "
                         "(max_connections_per_agent); retry later", close=True,
                         retry_after_s=CONNECTION_RETRY_AFTER_S)

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes = b"", keep: bool = True,
                    retry_after_s: int | None = None) -> None:
        self.stats.requests[status] += 1
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n{self._server_header}"
        if retry_after_s is not None:
            head += f"Retry-After: {retry_after_s}\r\n"
        if body:
            head += f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        elif status != 204:
            head += "Content-Length: 0\r\n"
        if not keep:
            head += "Connection: close\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()

    # -- requests ------------------------------------------------------------------------------

    async def _handle(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; returns whether the connection stays open."""
        h = req.headers
        has_body = "transfer-encoding" in h or h.get("content-length", "0") not in ("0", "")
        # A request whose body is left unread cannot be followed by another on this connection.
        keep_unread = req.keep_alive and not has_body
        method = _ROUTES.get(req.path)
        if method is None:
            raise _Reply(404, "path not found", close=not keep_unread)
        if req.path == "/query" and req.method in ("GET", "POST"):
            return await self._query(req, reader, writer)
        if req.method != method and not (method == "GET" and req.method == "HEAD"):
            raise _Reply(405, f"method {req.method} not allowed on {req.path}; use {method}", close=not keep_unread)
        if req.path == "/ping":
            await self._send(writer, 204, keep=keep_unread)
            return keep_unread
        if req.path == "/health":
            body = json.dumps(
                {"name": "puewatch-ingest", "message": "ready for writes", "status": "pass", "checks": [], "version": __version__}
            ).encode()
            await self._send(writer, 200, body if req.method == "GET" else b"", keep=keep_unread)
            return keep_unread
        if req.path == "/ready":
            body = json.dumps({"status": "ready", "started": self._started, "up": _uptime(self._started_ns)}).encode()
            await self._send(writer, 200, body if req.method == "GET" else b"", keep=keep_unread)
            return keep_unread
        return await self._write(req, reader, writer)

    async def _query(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The statements InfluxDB 1.x clients issue on connect; the collector stores, it does not answer reads."""
        params = parse_qs(req.query, keep_blank_values=True)
        h = req.headers
        length = h.get("content-length", "0")
        if "transfer-encoding" in h or not length.isdigit() or int(length) > 64 * 1024:
            raise _Reply(400, "a /query body must be a form under 64 KiB with Content-Length", close=True)
        if int(length):
            async with asyncio.timeout(self.config.body_timeout_s):
                form = await reader.readexactly(int(length))
            params.update(parse_qs(form.decode("utf-8", "replace"), keep_blank_values=True))
        if self._agent(req, params) is None:
            raise _Reply(401, "authorization failed", close=not req.keep_alive)
        results = []
        for n, statement in enumerate(s for s in _param(params, "q", "").split(";") if s.strip()):
            words = statement.split()
            upper = [w.upper() for w in words]
            if upper[:2] == ["SHOW", "DATABASES"] and len(words) == 2:
                results.append({"statement_id": n, "series": [
                    {"name": "databases", "columns": ["name"], "values": [[d] for d in self._databases]}]})
            elif upper[:2] == ["CREATE", "DATABASE"] and len(words) >= 3:
                name = words[2].strip('"')
                if name not in self._databases:
                    self._databases.append(name)
                results.append({"statement_id": n})
            else:
                results.append({"statement_id": n, "error": (
                    f"puewatch ingest stores writes only and does not run {' '.join(words[:2])[:60]!r}; "
                    "read from the store the collector writes to (`[store]` in collector.toml), or use puewatch report")})
        if not results:
            raise _Reply(400, "missing required parameter \"q\"", close=not req.keep_alive)
        status = 200 if not all("error" in r for r in results) else 400
        body = json.dumps({"results": results}).encode() if status == 200 else \
            json.dumps({"error": results[0]["error"]}).encode()
        await self._send(writer, status, body, keep=req.keep_alive)
        return req.keep_alive

    def _agent(self, req: _Request, params: dict[str, list[str]]) -> str | None:
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        scheme = scheme.lower()
        token: str | None = None
        if scheme in ("token", "bearer"):
            token = cred.strip()
        elif scheme == "basic" and req.api == "v1":
            try:
                _, _, token = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                token = None
        elif not auth and req.api == "v1" and "p" in params:
            token = _param(params, "p", "")
        if not token:
            return None
        return req.writers[0].agent_for(token)

    async def _write(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        cfg = self.config
        h = req.headers
        params = parse_qs(req.query, keep_blank_values=True)
        te = h.get("transfer-encoding")
        cl_text = h.get("content-length")
        if te is not None and cl_text is not None:
            raise _Reply(400, "both Content-Length and Transfer-Encoding", close=True)
        if te is not None and te.lower() != "chunked":
            raise _Reply(501, f"transfer encoding {te!r} not supported (only chunked)", close=True)
        length = 0
        if cl_text is not None:
            if not cl_text.isdigit() or len(cl_text) > 18:
                raise _Reply(400, f"invalid Content-Length {cl_text[:30]!r}", close=True)
            length = int(cl_text)
        unread = te is not None or length > 0
        agent = self._agent(req, params)
        if agent is None:
            raise _Reply(401, "unauthorized access" if req.api == "v2" else "authorization failed", close=unread or not req.keep_alive)
        if te is None and cl_text is None:
            # HTTP reads such a request's body as empty (RFC 9112 6.3): a 204 would tell a client that
            # sent lines without a length (an HTTP/1.0 one, say) that they were stored.
            raise _Reply(411, "a write needs Content-Length (0 for an empty body) or Transfer-Encoding: chunked; "
                         "without either its body is empty and nothing would be stored", close=True)
        if length > cfg.max_body_bytes:
            raise _Reply(413, f"request body of {length} bytes exceeds the limit of {cfg.max_body_bytes} bytes", close=True)
        precision = _param(params, "precision", "ns") or "ns"
        allowed = _V2_PRECISIONS if req.api == "v2" else _V1_PRECISIONS
        encoding = h.get("content-encoding", "identity").strip().lower()
        problem = None
        if precision not in allowed:
            problem = (400, f"invalid precision {precision!r}; allowed: {', '.join(allowed)}")
        elif encoding not in ("gzip", "identity", ""):
            problem = (415, f"content encoding {encoding!r} not supported (gzip or identity)")
        if problem is not None:
            raise _Reply(problem[0], problem[1], close=unread or not req.keep_alive)
        if h.get("expect", "").lower() == "100-continue" and unread:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(cfg.body_timeout_s):
                if te is not None:
                    raw = await self._read_chunked(reader, cfg.max_body_bytes)
                else:
                    raw = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            # The client ended its side mid-body: it may still read, so it is told, not left with a
            # closed connection and no word (nothing of the body is taken).
            raise _Reply(400, f"body cut short after {len(exc.partial)} of {length} byte(s) (Content-Length)",
                         close=True) from None
        except TimeoutError:
            self.stats.timeouts += 1
            raise _Reply(408, f"request body not received within {cfg.body_timeout_s:g} s", close=True) from None
        self.stats.bytes_received += len(raw)
        body = _gunzip(raw, cfg.max_body_bytes) if encoding == "gzip" else raw
        self.stats.bytes_decompressed += len(body)
        try:
            result = self.parser.parse(body, precision, req.received_ns)
        except ValueError as exc:  # pragma: no cover - precision checked above
            raise _Reply(400, str(exc)) from None
        # Every line whose series could be read counts, refused for its time or type or not: a line
        # out of scope refuses the body whole (403), never a partial write that keeps the rest.
        scopes = req.writers[1]
        refused = scopes.refusal(agent, result.series) if result.series else None
        if refused is not None:
            well_formed = result.lines + result.time_refused + result.store_refused
            self._forbid(agent, well_formed, well_formed + result.error_count, *refused)
        if result.lines:
            self.received_ns = req.received_ns
            try:
                # A durable sink returns an awaitable, done once the lines are on disk: 204 only then.
                ack = self.sink.accept(agent, result.body, result.lines, result.points)
                if ack is not None:
                    await ack
            except Exception as exc:
                retry_after_s = getattr(exc, "retry_after_s", None)
                if retry_after_s is not None:  # backpressure: nothing taken, the sender keeps the lines
                    self.stats.backpressure += 1
                    raise _Reply(503, str(exc), close=not req.keep_alive, retry_after_s=retry_after_s) from None
                self.stats.sink_errors += 1
                log.exception("ingest: the sink failed on %d line(s) from %s", result.lines, agent)
                raise _Reply(503, f"cannot take the data now: {exc}", close=not req.keep_alive) from None
            self.stats.lines_accepted += result.lines
            # Stored: only the answer waits, while the store catches up. Not a meters' feeder's: its
            # few lines are the facility side of the live PUE, and they are not what fills the store.
            if self._pace is not None and not scopes.is_feeder(agent):
                waited = await self._pace()
                if waited > 0.0:
                    self.stats.paced += 1
                    self.stats.paced_seconds += waited
        dropped = result.error_count + result.time_refused + result.store_refused
        if dropped:
            self.stats.parse_errors += result.error_count
            self.stats.store_refused += result.store_refused
            self.stats.clock_skew_refused += result.time_refused - result.retention_refused
            self.stats.retention_refused += result.retention_refused
            # As InfluxDB answers a partial write ("partial write: points beyond retention policy dropped=N"),
            # naming each dropped line (up to MAX_ERRORS_IN_REPLY) and why.
            shown = "; ".join(result.errors[:MAX_ERRORS_IN_REPLY])
            more = dropped - min(len(result.errors), MAX_ERRORS_IN_REPLY)
            message = f"partial write: {shown}" + (f"; and {more} more bad line(s)" if more > 0 else "")
            message += f" dropped={dropped} ({result.lines} line(s) accepted)"
            self._warn(agent, dropped, result.lines, result.errors[0])
            # Every refused line, machine-readable (the message names at most MAX_ERRORS_IN_REPLY):
            # a line number, or [first, last] for a line whose string value spans lines.
            refused = [a if a == b else [a, b] for a, b in result.refused]
            raise _Reply(400, message, close=not req.keep_alive, extra={"refused_lines": refused})
        await self._send(writer, 204, keep=req.keep_alive)
        return req.keep_alive

    def _forbid(self, agent: str, well_formed: int, lines: int, why: str, series: int) -> None:
        """Refuse the whole body (`lines` lines, `well_formed` of them readable): 403 naming the first
        series out of scope; counted, logged (rate-limited)."""
        self.stats.scope_refused_lines += well_formed
        more = f" (and {series - 1} more series out of scope)" if series > 1 else ""
        message = f"{why}{more}; nothing of this request was stored ({lines} line(s))"
        now = time.monotonic()
        if now - self._warned.get("403 " + agent, -1e9) >= 60.0:
            self._warned["403 " + agent] = now
            log.warning("ingest: refused %d line(s) from %s: %s", lines, agent, message)
        raise _Reply(403, message)

    def _warn(self, agent: str, bad: int, good: int, first: str) -> None:
        """At most one warning per agent per minute: a broken writer must not flood the log."""
        now = time.monotonic()
        if now - self._warned.get(agent, -1e9) >= 60.0:
            self._warned[agent] = now
            log.warning("ingest: %s sent %d bad line(s) (%d accepted); first: %s", agent, bad, good, first)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
        """A chunked body; any malformation (size line too long or not hex, data not followed by CRLF,
        the body cut short) is a 400 that closes the connection."""
        parts: list[bytes] = []
        total = 0  # the chunks' declared sizes
        received = 0  # the data bytes that came
        try:
            while True:
                line = await _chunk_line(reader)
                size_text = line[:-2].split(b";", 1)[0].strip()
                if not _CHUNK_SIZE_RE.fullmatch(size_text):
                    raise _Reply(400, "invalid chunk size line (expected 1-16 hex digits)", close=True)
                size = int(size_text, 16)
                if size == 0:
                    break
                total += size
                if total > max_bytes:
                    raise _Reply(413, f"request body exceeds the limit of {max_bytes} bytes", close=True)
                try:
                    parts.append(await reader.readexactly(size))
                except asyncio.IncompleteReadError as exc:
                    received += len(exc.partial)
                    raise
                received += size
                if await reader.readexactly(2) != b"\r\n":
                    raise _Reply(400, "chunk not followed by CRLF", close=True)
            for _ in range(100):  # trailer fields, ignored
                if await _chunk_line(reader) == b"\r\n":
                    return b"".join(parts)
        except asyncio.IncompleteReadError:
            raise _Reply(400, f"chunked body cut short after {received} byte(s) of data", close=True) from None
        raise _Reply(400, "too many trailer fields", close=True)


def _param(params: dict[str, list[str]], name: str, default: str) -> str:
    """A query parameter's first value, as InfluxDB reads it (Go's url.Values.Get): a repeated one,
    `precision=s&precision=ns`, means `s` there, and must here too."""
    values = params.get(name)
    return values[0] if values else default


async def _chunk_line(reader: asyncio.StreamReader) -> bytes:
    """One chunk-size or trailer line with its CRLF, at most MAX_CHUNK_LINE_BYTES long."""
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:  # no CRLF within the stream buffer (1 MiB)
        raise _Reply(400, f"chunk line longer than {MAX_CHUNK_LINE_BYTES} bytes", close=True) from None
    if len(line) > MAX_CHUNK_LINE_BYTES:
        raise _Reply(400, f"chunk line longer than {MAX_CHUNK_LINE_BYTES} bytes", close=True)
    return line


def _uptime(since_ns: int) -> str:
    s = (time.monotonic_ns() - since_ns) // 1_000_000_000
    return f"{s // 3600}h{s % 3600 // 60}m{s % 60}s"


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    """Decompress gzip (several members allowed), never holding more than max_bytes of output."""
    out: list[bytes] = []
    total = 0
    data = raw
    try:
        while data:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(data, max_bytes - total + 1)
            total += len(chunk)
            out.append(chunk)
            if total > max_bytes:
                raise _Reply(413, f"decompressed request body exceeds the limit of {max_bytes} bytes", close=True)
            if not d.eof:
                if d.unconsumed_tail:  # output limit reached
                    raise _Reply(413, f"decompressed request body exceeds the limit of {max_bytes} bytes", close=True)
                raise _Reply(400, "truncated gzip body")
            data = d.unused_data
    except zlib.error as exc:
        raise _Reply(400, f"invalid gzip body: {exc}") from None
    return out[0] if len(out) == 1 else b"".join(out)
