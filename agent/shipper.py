"""Ships sealed spool segments to an InfluxDB-compatible write endpoint.

One thread, standard library only (http.client, ssl, gzip): the agent stays
small. Segments go out oldest first, one per request, gzip-compressed:

- 2xx: the segment is removed from the spool;
- 429, 5xx, timeouts, refused connections: the segment stays, and the next try
  comes after `puewatch.backoff.Backoff` (exponential, full jitter, capped); a 429 or
  503 with `Retry-After` (seconds or an HTTP date) waits at least that long, bounded by
  the backoff's cap (`retry_max_s`), so a wrong or huge header cannot stall the agent;
- 401, 403: the same (the operator may fix the token meanwhile: a `token_file` is read again
  after each such answer, and a new token there is used from the next try), counted in
  `stats.unauthorized` and logged once per episode: data is never dropped for it;
- 400 partial write (`... dropped=N`): the collector stored the other lines; the
  refused ones, named in its reply (`agent/refusal.py`), go to spool/rejected/ and
  only they are counted as dropped (a reply that names fewer than N: the whole
  batch is kept there for the operator, N counted);
- 413: the batch is larger than the collector takes: it is sent in halves, and halves
  of those (see `Shipper._split`); only a single line too large is set aside;
- any other 4xx: the collector will never take this batch; its message is
  logged, the segment is moved to spool/rejected/ and its points are counted
  as dropped (retrying forever would block everything behind it).
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from puewatch.agent.refusal import read_refusal
from puewatch.agent.spool import Segment, Spool
from puewatch.backoff import Backoff
from puewatch.redact import redact_url, register_secret

log = logging.getLogger("puewatch.agent.ship")


@dataclass
class Endpoint:
    url: str  # full URL with query
    token: str | None
    auth_scheme: str
    ca_file: str | None
    timeout_s: float
    gzip_level: int
    token_file: str | None = None  # where the token came from: read again when the collector refuses it


class Shipper(threading.Thread):
    def __init__(
        self,
        spool: Spool,
        endpoint: Endpoint,
        stats,
        flush_interval_s: float,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        super().__init__(name="puewatch-ship", daemon=True)
        self.spool = spool
        self.ep = endpoint
        self.stats = stats
        self.flush_interval_s = flush_interval_s
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        parts = urllib.parse.urlsplit(endpoint.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        if endpoint.token:
            self._headers["Authorization"] = f"{endpoint.auth_scheme} {endpoint.token}"
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=endpoint.ca_file)
        self._conn: http.client.HTTPConnection | None = None
        self._stopping = threading.Event()
        self._deadline: float | None = None
        self._retry_at = 0.0
        self._retry_after_s: float | None = None  # the last 429/503's Retry-After, for the next wait
        self._down_logged = False
        self._auth_logged = False
        # Batches with lines refused since the last one stored whole (a clock ahead of the collector's
        # refuses every batch): the first is logged in full, the rest counted and summed up after.
        self._refused_batches = 0
        self._refused_lines = 0
        self._refused_said_at = 0.0  # monotonic: when the refusals were last summed up in the log
        self._split_logged = False  # a batch too large for the collector (413) was split: logged once

    def _reread_token(self) -> None:
        """After a 401/403: the token file again, and its token from the next try where it changed (the
        operator fixed it on the node). An unreadable or empty file keeps the token in use, logged once."""
        if not self.ep.token_file:
            return
        from puewatch.agent.config import read_token  # (the config module imports the sources: only here)

        try:
            token = read_token(self.ep.token_file)
        except ValueError as exc:
            if not self._auth_logged:
                log.error("output.token_file: %s; the token read at start is kept", exc)
            return
        if token != self.ep.token:
            register_secret(token)
            self.ep.token = token
            self._headers["Authorization"] = f"{self.ep.auth_scheme} {token}"
            log.warning("output.token_file %s holds a new token: using it from the next try", self.ep.token_file)

    # -- control -------------------------------------------------------------------------------

    def stop(self, timeout_s: float) -> None:
        """Seal what is open and try to deliver everything until `timeout_s` has passed."""
        self._deadline = time.monotonic() + timeout_s
        self._retry_at = 0.0
        self._stopping.set()
        self.spool.seal_wanted.set()
        self.join(timeout_s + 1.0)

    def run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while True:
            if self._stopping.is_set():
                self._final_flush()
                return
            wake = next_flush if not self.backoff.failures else min(next_flush, self._retry_at)
            timeout = max(0.0, wake - time.monotonic())
            self.spool.seal_wanted.wait(timeout)
            now = time.monotonic()
            if now >= next_flush or self.spool.seal_wanted.is_set():
                try:
                    self.spool.seal()
                except OSError as exc:
                    log.error("spool: cannot seal a batch: %s", exc)
                # Fixed rate: the next flush time does not drift with the send time.
                while next_flush <= now:
                    next_flush += self.flush_interval_s
            if time.monotonic() >= self._retry_at:
                self._drain()

    def _final_flush(self) -> None:
        try:
            self.spool.seal()
        except OSError as exc:
            log.error("spool: cannot seal the last batch: %s", exc)
        self._drain(final=True)
        left = self.spool.points
        if left:
            log.warning("stopping with %d point(s) in the spool %s; they are sent at the next start", left, self.spool.dir)
        self._close()

    # -- sending ---------------------------------------------------------------------------------

    def _drain(self, final: bool = False) -> None:
        while True:
            if final and self._deadline is not None and time.monotonic() >= self._deadline:
                return
            if not final and self._stopping.is_set():
                return
            seg = self.spool.oldest()
            if seg is None:
                return
            try:
                outcome = self._send(seg)
            except Exception:  # never let the shipping thread die
                log.exception("unexpected error while sending %s", seg.path.name)
                outcome = "retry"
            if outcome == "retry":
                self.spool.release()
                delay = self.backoff.failed()
                if self._retry_after_s is not None:
                    # The collector said when: not sooner (it is saturated), not later than our cap.
                    delay = max(delay, min(self._retry_after_s, self.backoff.max_s))
                    self._retry_after_s = None
                self._retry_at = time.monotonic() + delay
                self.stats.send_failures += 1
                log.debug("next attempt in %.1f s", delay)
                return

    def _post(self, data: bytes) -> tuple[int, str | None, bytes] | None:
        """POST one body (gzip-compressed here): (status, Retry-After, reply), or None where the
        collector could not be reached (logged once per episode)."""
        body = gzip.compress(data, compresslevel=self.ep.gzip_level, mtime=0)
        try:
            conn = self._connection()
            conn.request("POST", self._target, body=body, headers=self._headers)
            resp = conn.getresponse()
            status = resp.status
            retry_after = resp.getheader("Retry-After")
            reply = resp.read(_REPLY_MAX_BYTES)
            if resp.will_close:
                self._close()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self._close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                log.error("TLS certificate of %s not trusted: %s (set [output] ca_file?)", self._host, exc.verify_message)
            elif not self._down_logged:
                log.warning("collector %s unreachable (%s); batches are kept in the spool and retried",
                            redact_url(self.ep.url), exc)
            self._down_logged = True
            return None
        return status, retry_after, reply

    def _must_wait(self, status: int, retry_after: str | None, message: str) -> bool:
        """Whether a reply means "not now" (429, 5xx, 401, 403): the batch stays in the spool and is
        tried again with backoff. Counted and logged once per episode."""
        if status == 429 or status >= 500:
            self._retry_after_s = _retry_after_s(retry_after) if status in (429, 503) else None
            if not self._down_logged:
                log.warning("collector answered %d (%s); retrying with backoff", status, message)
            self._down_logged = True
            return True
        if status in (401, 403):
            # A token the collector does not (yet) accept: the operator can fix it, so the data
            # waits in the spool; counted, logged once per episode.
            self.stats.unauthorized += 1
            self._reread_token()
            if not self._auth_logged:
                log.error(
                    "collector answered %d (%s): unauthorized, retrying with backoff; batches stay in the spool "
                    "until the collector accepts the token ([output] token / token_file)", status, message,
                )
            self._auth_logged = True
            return True
        return False

    def _delivered(self, stored: int) -> None:
        """A batch is off the spool with `stored` of its points in the collector."""
        self.stats.points_sent += stored
        self.stats.batches_sent += 1
        self.stats.last_ship_ns = time.time_ns()

    def _send(self, seg: Segment) -> str:
        data = self.spool.read(seg)
        if data is None:
            return "ok"  # unreadable: the spool has dropped it, counted and logged
        posted = self._post(data)
        if posted is None:
            return "retry"
        status, retry_after, reply = posted
        if 200 <= status < 300:
            self.spool.done(seg)
            self._delivered(seg.points)
            self._reachable()
            if self._refused_batches > 1:
                log.warning("collector stored a batch whole again; %d more batch(es) had %d line(s) refused meanwhile, "
                            "set aside in %s and counted as dropped", self._refused_batches - 1, self._refused_lines,
                            self.spool.rejected_dir)
            self._refused_batches = self._refused_lines = 0
            return "ok"
        message = _server_message(reply)
        if self._must_wait(status, retry_after, message):
            return "retry"
        if status == 413 and seg.points > 1:
            return self._split(seg, data, message)
        if status == 400:
            refusal = read_refusal(data, message, _server_field(reply, "refused_lines"))
            if refusal.partial:
                return self._partial(seg, data, refusal, message)
        kept = self.spool.reject(seg, data)
        log.error(
            "collector refused batch %s with %d: %s; %d point(s) moved to %s and counted as dropped",
            seg.path.name,
            status,
            message,
            seg.points,
            kept or self.spool.rejected_dir,
        )
        self.stats.rejected_batches += 1
        return "rejected"

    def _reachable(self) -> None:
        """The collector took a body: the episodes of unreachability and refused tokens end."""
        if self._auth_logged:
            log.warning("collector accepts the token again; draining the spool (%d point(s) waiting)", self.spool.points)
        elif self.backoff.succeeded() or self._down_logged:
            log.warning("collector reachable again; draining the spool (%d point(s) waiting)", self.spool.points)
        self.backoff.succeeded()
        self._down_logged = self._auth_logged = False

    def _split(self, seg: Segment, data: bytes, message: str) -> str:
        """The collector refused the batch as too large (413: a batch_max_bytes above its
        max_body_bytes, or a proxy's limit): it is sent in halves, and halves of those, until the
        collector takes each part. Only a single line too large for it, or a part it refuses for
        another reason (4xx), is set aside and counted as dropped; every other line is stored.
        Where a part must wait (429, 5xx, 401, 403, unreachable), the whole batch stays in the
        spool and is tried again later: the parts stored by then are sent again with it, the same
        points, which a store keeps once (as after a timeout)."""
        lines = _lines(data, seg.points)
        half = len(lines) // 2
        todo = [(half, len(lines)), (0, half)]  # line ranges to send, the next last
        stored = parts = 0
        aside: list[bytes] = []
        aside_points = 0
        refused_parts: list[str] = []
        while todo:
            lo, hi = todo.pop()
            part = b"".join(lines[lo:hi])
            posted = self._post(part)
            if posted is None:
                return "retry"
            status, retry_after, reply = posted
            if 200 <= status < 300:
                stored += hi - lo
                parts += 1
                continue
            message = _server_message(reply)
            if self._must_wait(status, retry_after, message):
                return "retry"
            if status == 413 and hi - lo > 1:
                mid = (lo + hi) // 2
                todo += [(mid, hi), (lo, mid)]
                continue
            refusal = read_refusal(part, message, _server_field(reply, "refused_lines")) if status == 400 else None
            if refusal is not None and refusal.partial:
                parts += 1
                aside.append(_refused(lines[lo:hi], refusal))
                aside_points += refusal.dropped
                stored += max(0, hi - lo - refusal.dropped)
            else:
                aside.append(part)
                aside_points += hi - lo
            refused_parts.append(f"lines {lo + 1}-{hi} with {status}: {message[:300]}")
        kept = self.spool.set_aside(seg.seq, b"".join(aside), aside_points) if aside else None
        if aside:
            # Said once the batch is done: a split cut short (429, 5xx, no connection) is sent again whole, and
            # its parts refused before then were not dropped (found by the agent audit: 44 lines logged as
            # dropped where 15 were).
            log.error("collector refused %d line(s) of batch %s in %d part(s) (%s%s); set aside in %s and counted as "
                      "dropped", aside_points, seg.path.name, len(refused_parts), refused_parts[0],
                      f"; and {len(refused_parts) - 1} more" if len(refused_parts) > 1 else "", kept or self.spool.rejected_dir)
        self.spool.done(seg)
        self._delivered(stored)
        self._reachable()
        self.stats.split_batches += 1
        if aside:
            self.stats.rejected_batches += 1
        if not self._split_logged:
            log.warning("collector refused batch %s as too large (413: %s): sent in %d part(s), %d of its %d point(s) "
                        "stored%s; lower [agent] batch_max_bytes below the collector's [ingest] max_body_bytes (this "
                        "is logged once; puewatch_agent split_batches counts them)", seg.path.name, message[:500],
                        parts, stored, seg.points, f", {aside_points} set aside in {kept or self.spool.rejected_dir}"
                        if aside else "")
            self._split_logged = True
        return "ok" if not aside else "rejected"

    def _partial(self, seg: Segment, data: bytes, refusal, message: str) -> str:
        """A partial write: the collector stored all but `refusal.dropped` lines. Only the refused
        lines are set aside and counted; the stored ones count as sent."""
        bad = _refused(_lines(data, seg.points), refusal)
        if refusal.identified:
            what = f"the {refusal.dropped} refused line(s)"
        else:
            what = f"the whole batch (the reply names {refusal.named} of its {refusal.dropped} refused line(s))"
        kept = self.spool.set_aside(seg.seq, bad, refusal.dropped)
        self.spool.done(seg)
        stored = max(0, seg.points - refusal.dropped)
        self._delivered(stored)
        self._refused_batches += 1
        now = time.monotonic()
        if self._refused_batches == 1:
            self._refused_said_at = now
            log.error(
                "collector refused %d of the %d line(s) of batch %s: %s; %s kept in %s, %d counted as dropped, "
                "the other %d stored (further refusals are counted, and summed up once a batch is stored whole)",
                refusal.dropped, seg.points, seg.path.name, message[:1000], what, kept or self.spool.rejected_dir,
                refusal.dropped, stored,
            )
        else:
            self._refused_lines += refusal.dropped
            log.debug("collector refused %d of the %d line(s) of batch %s: %s", refusal.dropped, seg.points,
                      seg.path.name, message[:1000])
            if now - self._refused_said_at >= REFUSED_SUMMARY_S:
                # Refusals that never clear (a clock an hour ahead of the collector's refuses every line) are
                # summed up every so often, not only once a batch is stored whole, which may never come (one
                # line in the log for hours of data set aside: found by the shipping audit).
                self._refused_said_at = now
                log.error("collector still refuses lines: %d more batch(es) had %d line(s) refused since the first, "
                          "set aside in %s and counted as dropped; the last: %s", self._refused_batches - 1,
                          self._refused_lines, self.spool.rejected_dir, message[:1000])
        return "rejected"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            timeout = self.ep.timeout_s
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None


# While the collector goes on refusing lines, their running sum is logged this often (seconds).
REFUSED_SUMMARY_S = 60.0

# Enough for a partial-write reply naming many refused lines (InfluxDB quotes each whole).
_REPLY_MAX_BYTES = 1 << 16


def _lines(data: bytes, points: int) -> list[bytes]:
    """A batch's lines, each with its newline (one point a line, as the agent writes them)."""
    return [line + b"\n" for line in data.split(b"\n")[:points]]


def _refused(lines: list[bytes], refusal) -> bytes:
    """What of a partial write is set aside: the refused lines where the reply names each, else all
    the lines sent, for the operator to compare (the reply does not say which)."""
    if refusal.identified:
        return b"".join(lines[i] for i in refusal.lines)
    return b"".join(lines)


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds from now (RFC 9110: delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_field(reply: bytes, key: str) -> object:
    """A key of a JSON reply (None if absent or not JSON)."""
    try:
        doc = json.loads(reply.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return doc.get(key) if isinstance(doc, dict) else None


def _server_message(reply: bytes) -> str:
    text = reply.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            for key in ("message", "error"):
                if doc.get(key):
                    return str(doc[key])
    except ValueError:
        pass
    return " ".join(text.split())[:500] or "(empty reply)"

