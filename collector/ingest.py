"""InfluxDB-compatible write endpoints: what agents and Telegraf send to the collector.

    POST /api/v2/write?bucket=&org=&precision=ns|us|ms|s     Authorization: Token T | Bearer T
    POST /write?db=&rp=&precision=n|ns|u|us|ms|s|m|h           u=&p=T, Basic (password T), Token, Bearer
    GET  /ping     204, as InfluxDB
    GET  /health   200 {"status": "pass", ...}

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
keep-alive connection is closed after `idle_timeout_s`.

Tokens identify agents. The token file (or systemd credential, `$CREDENTIALS_DIRECTORY/
<name>`, same format) has one agent per line, `name token`; `#` starts a comment. A
presented token is compared, in constant time, with every token (SHA-256 digests through
`hmac.compare_digest`, no early exit), so timing reveals neither a token nor which agent
matched. The agent's name goes to the sink with its lines.
"""

from __future__ import annotations

import asyncio
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
from puewatch.collector.lineparse import PRECISIONS, LineParser, Point, Subscription, TimeWindow
from puewatch.config import setting
from puewatch.errors import ConfigError

__all__ = ["IngestConfig", "IngestServer", "IngestStats", "Sink", "Tokens", "ssl_context"]

log = logging.getLogger("puewatch.collector.ingest")

MAX_HEAD_BYTES = 64 * 1024
MAX_ERRORS_IN_REPLY = 10
_V2_PRECISIONS = ("ns", "us", "ms", "s")


@dataclass
class IngestConfig:
    """The InfluxDB-compatible write endpoint for agents and Telegraf."""

    listen: str = setting("127.0.0.1", doc="Address to listen on (`0.0.0.0` or `::` for every interface).")
    port: int = setting(8087, min=0, max=65535, doc="TCP port (0: any free port, for tests).")
    tls_cert: str | None = setting(None, doc="PEM certificate (chain) file; with `tls_key`, the endpoint speaks HTTPS only.")
    tls_key: str | None = setting(None, doc="PEM private key file for `tls_cert`.")
    token_file: str | None = setting(
        None, doc="File of agent tokens, one `name token` per line (`#` comments); should be readable by the collector only."
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
    max_connections: int = setting(1024, min=1, max=100_000, doc="Open connections beyond this are closed at once.")
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
    """Agent tokens; `agent_for(token)` compares with all of them in constant time."""

    def __init__(self, tokens: dict[str, str]) -> None:
        if not tokens:
            raise ConfigError("no agent tokens configured")
        self._digests = [(name, hashlib.sha256(tok.encode()).digest()) for name, tok in tokens.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def agent_for(self, token: str) -> str | None:
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for name, digest in self._digests:  # every comparison runs, whichever matches
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found

    @classmethod
    def parse(cls, text: str, source: str) -> Tokens:
        return cls(_parse_tokens(text, source))

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
            for name, token in _parse_tokens(text, str(path)).items():
                if name in merged:
                    raise ConfigError(f"{path}: agent {name!r} is also defined in another token source")
                merged[name] = token
        return cls(merged)


def _parse_tokens(text: str, source: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    seen: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(f"{source}:{lineno}: expected `name token`, got {len(parts)} word(s)")
        name, token = parts
        if not _NAME_RE.fullmatch(name):
            raise ConfigError(f"{source}:{lineno}: agent name {name!r} must be 1-128 of A-Z a-z 0-9 _ . : @ -")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{source}:{lineno}: the token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
        if name in tokens:
            raise ConfigError(f"{source}:{lineno}: agent {name!r} is listed twice")
        if token in seen:
            raise ConfigError(f"{source}:{lineno}: agents {seen[token]!r} and {name!r} share a token")
        tokens[name] = token
        seen[token] = name
    if not tokens:
        raise ConfigError(f"{source}: no tokens (expected lines of `name token`)")
    return tokens


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


@dataclass
class IngestStats:
    """Counters for /metrics."""

    requests: Counter = field(default_factory=Counter)  # by HTTP status
    lines_accepted: int = 0
    parse_errors: int = 0  # bad lines (dropped, reported to the client)
    clock_skew_refused: int = 0  # lines refused for a time outside max_clock_skew_s / max_age_s (reported to the client)
    bytes_received: int = 0  # request bodies as sent (compressed)
    bytes_decompressed: int = 0
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0  # over max_connections
    timeouts: int = 0  # clients cut off by a header or body timeout
    sink_errors: int = 0
    backpressure: int = 0  # requests answered 503 + Retry-After: the sink could not take them (nothing acknowledged)


# -- HTTP ---------------------------------------------------------------------------------------

_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_V2_CODES = {
    400: "invalid",
    401: "unauthorized",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    413: "request too large",
    415: "unsupported media type",
    500: "internal error",
    501: "not implemented",
    503: "unavailable",
}
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name
_ROUTES = {"/api/v2/write": "POST", "/write": "POST", "/ping": "GET", "/health": "GET"}


class _Reply(Exception):
    """Answer the request with this status and message (and maybe close the connection)."""

    def __init__(self, status: int, message: str, close: bool = False, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.retry_after_s = retry_after_s


class _Request:
    __slots__ = ("method", "path", "query", "version", "headers", "keep_alive", "received_ns", "api")

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


def _json(status: int, message: str, api: str) -> bytes:
    if api == "v1":
        return json.dumps({"error": message}).encode()
    return json.dumps({"code": _V2_CODES.get(status, "invalid"), "message": message}).encode()


class IngestServer:
    """The write endpoint. `await start()`, then `port` is the bound port; `await close()`."""

    def __init__(self, config: IngestConfig, tokens: Tokens, sink: Sink) -> None:
        self.config = config
        self.tokens = tokens
        self.sink = sink
        window = TimeWindow(ahead_ns=round(config.max_clock_skew_s * 1e9), behind_ns=round(config.max_age_s * 1e9))
        self.parser = LineParser(getattr(sink, "subscribed", frozenset()), window)
        self.stats = IngestStats()
        self.port: int | None = None
        # Wall-clock receive time of the request whose lines the sink is being handed (for
        # sinks that measure latency from arrival to store).
        self.received_ns = 0
        self._ssl = ssl_context(config)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._warned: dict[str, float] = {}
        self._server_header = f"X-Influxdb-Build: puewatch\r\nX-Influxdb-Version: puewatch-{__version__}\r\n"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._connection,
                self.config.listen,
                self.config.port,
                ssl=self._ssl,
                limit=1024 * 1024,  # stream buffer; the head is limited to MAX_HEAD_BYTES separately
                reuse_address=True,
                ssl_handshake_timeout=self.config.header_timeout_s if self._ssl else None,
            )
        except OSError as exc:
            raise ConfigError(f"ingest: cannot listen on {self.config.listen}:{self.config.port}: {exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "ingest listening on %s://%s:%d (%d agent token(s))",
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
        if stats.connections_open >= self.config.max_connections:
            stats.connections_refused += 1
            writer.transport.abort()
            return
        stats.connections_open += 1
        task = asyncio.current_task()
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # server closing
        finally:
            stats.connections_open -= 1
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        while True:
            # Idle keep-alive: wait for the first byte of the next request.
            try:
                async with asyncio.timeout(cfg.idle_timeout_s):
                    first = await reader.readexactly(1)
            except TimeoutError:
                return
            except asyncio.IncompleteReadError:
                return  # closed between requests: normal
            api = "v2"
            try:
                try:
                    async with asyncio.timeout(cfg.header_timeout_s):
                        head = first + await reader.readuntil(b"\r\n\r\n")
                except TimeoutError:
                    self.stats.timeouts += 1
                    raise _Reply(408, f"request head not received within {cfg.header_timeout_s:g} s", close=True) from None
                except asyncio.LimitOverrunError:
                    raise _Reply(431, "request head too large", close=True) from None
                if len(head) > MAX_HEAD_BYTES:
                    raise _Reply(431, f"request head larger than {MAX_HEAD_BYTES} bytes", close=True)
                req = _parse_head(head)
                req.received_ns = time.time_ns()
                api = "v1" if req.path == "/write" else "v2"
                req.api = api
                keep = await self._handle(req, reader, writer)
            except _Reply as reply:
                await self._send(writer, reply.status, _json(reply.status, reply.message, api), keep=not reply.close,
                                 retry_after_s=reply.retry_after_s)
                if reply.close:
                    return
                continue
            if not keep:
                return

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
        return await self._write(req, reader, writer)

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
            token = params["p"][-1]
        if not token:
            return None
        return self.tokens.agent_for(token)

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
        if length > cfg.max_body_bytes:
            raise _Reply(413, f"request body of {length} bytes exceeds the limit of {cfg.max_body_bytes} bytes", close=True)
        precision = params.get("precision", ["ns"])[-1] or "ns"
        allowed = _V2_PRECISIONS if req.api == "v2" else tuple(PRECISIONS)
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
        dropped = result.error_count + result.time_refused
        if dropped:
            self.stats.parse_errors += result.error_count
            self.stats.clock_skew_refused += result.time_refused
            # As InfluxDB answers a partial write ("partial write: points beyond retention policy dropped=N"),
            # naming each dropped line (up to MAX_ERRORS_IN_REPLY) and why.
            shown = "; ".join(result.errors[:MAX_ERRORS_IN_REPLY])
            more = dropped - min(len(result.errors), MAX_ERRORS_IN_REPLY)
            message = f"partial write: {shown}" + (f"; and {more} more bad line(s)" if more > 0 else "")
            message += f" dropped={dropped} ({result.lines} line(s) accepted)"
            self._warn(agent, dropped, result.lines, result.errors[0])
            raise _Reply(400, message, close=not req.keep_alive)
        await self._send(writer, 204, keep=req.keep_alive)
        return req.keep_alive

    def _warn(self, agent: str, bad: int, good: int, first: str) -> None:
        """At most one warning per agent per minute: a broken writer must not flood the log."""
        now = time.monotonic()
        if now - self._warned.get(agent, -1e9) >= 60.0:
            self._warned[agent] = now
            log.warning("ingest: %s sent %d bad line(s) (%d accepted); first: %s", agent, bad, good, first)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            if not _CHUNK_SIZE_RE.fullmatch(size_text):
                raise _Reply(400, "invalid chunk size", close=True)
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            if total > max_bytes:
                raise _Reply(413, f"request body exceeds the limit of {max_bytes} bytes", close=True)
            parts.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise _Reply(400, "chunk not followed by CRLF", close=True)
        for _ in range(100):  # trailer fields, ignored
            if await reader.readuntil(b"\r\n") == b"\r\n":
                return b"".join(parts)
        raise _Reply(400, "too many trailer fields", close=True)


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
