"""The line-protocol corpus run: every case through the collector's write endpoint, compared with
the case's recorded expectation or, where there is none, with a real influxd 1.6.7 given the same body.

Used by test_lineprotocol_conformance.py; `python tests/conformance/lineprotocol_support.py` prints
every disagreement (for work on the parser). The corpus is read in place (conformance_support.shared),
never copied. Imported by this unique name.

How a case is judged:
- with an expectation: `error`/`error_suffix` -> the collector answers 400 (what the good lines of a
  multi-line body become is InfluxDB's partial write, not recorded); `ok` -> 204; `points` -> 204 and
  the lines handed to the store, read back with the store's own reader (`parse_line`), are exactly
  the recorded points (measurement, tags, field names, types and values, time; the receive time
  where the line had none).
- without: the body goes to influxd (database `r<N>`) and to the collector, whose accepted lines go
  to influxd as the store would write them (database `p<N>`); the status class must match and the two
  databases must hold the same series, field types and rows (times of lines without a timestamp
  within a minute of each other: each server takes its own receive time). A case on which influxd
  answers 5xx or dies is left out of the agreement (and influxd is restarted).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import math
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (_HERE, _HERE.parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from puewatch.collector.ingest import IngestConfig, IngestServer, Tokens  # noqa: E402
from puewatch.collector.lineparse import LineError, parse_line, split_lines  # noqa: E402

TOKEN = "conformance-token-0123456789"
DEFAULT_TIME_SLACK_NS = 60 * 10**9


@dataclass
class Case:
    id: str
    body: bytes
    precision: str
    expect: dict | None
    note: str

    @classmethod
    def from_json(cls, d: dict) -> Case:
        body = base64.b64decode(d["body_b64"]) if d.get("body_b64") is not None else d["body"].encode("utf-8", "surrogatepass")
        return cls(d["id"], body, d["precision"], d["expect"], d.get("note", ""))


def load(path: Path) -> list[Case]:
    with open(path, encoding="utf-8") as f:
        return [Case.from_json(json.loads(line)) for line in f if line.strip()]


class RecordingSink:
    """The store side of the endpoint: keeps each accepted body as handed to the store."""

    subscribed = frozenset()

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def accept(self, agent: str, body: bytes, lines: int, points) -> None:
        self.bodies.append(body)


class Collector:
    """A real ingest server (its own event loop in a thread) with a recording sink."""

    def __init__(self, unsigned: bool) -> None:
        self.sink = RecordingSink()
        config = IngestConfig(port=0, token_file="unused", max_clock_skew_s=0.0)
        self.loop = asyncio.new_event_loop()
        self.server = IngestServer(config, Tokens({"conformance": TOKEN}), self.sink)
        self.server.types.unsigned = unsigned
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def write(self, case: Case) -> tuple[int, str, list[bytes]]:
        """(status, message, accepted lines) for one case, on a fresh database (no types known)."""
        self.server.types.forget()
        self.sink.bodies.clear()
        status, text = _post(self.conn, "/write?" + _query(case.precision, None), case.body,
                             {"Authorization": f"Token {TOKEN}"})
        lines = [ln for b in self.sink.bodies for ln in split_lines(b)]
        return status, text, lines


def _query(precision: str, db: str | None) -> str:
    params = {}
    if db is not None:
        params["db"] = db
    if precision:
        params["precision"] = precision
    return urllib.parse.urlencode(params)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> tuple[int, str]:
    conn.request("POST", path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read().decode("utf-8", "replace")


# -- comparison with a recorded expectation ------------------------------------------------------

_TYPES = {"float": float, "int": int, "uint": int, "string": str, "bool": bool}


def _typed(kind: str, value):
    if kind == "float":
        return ("float", float(value))
    if kind in ("int", "uint"):
        return ("integer", int(value))  # the wire says `i` or `u`; both are integers once read
    return (kind, value)


def _point_of(line: bytes, received_ns: int | None) -> tuple:
    p = parse_line(line)
    fields = {}
    for k, v in p.fields.items():
        kind = "bool" if isinstance(v, bool) else "string" if isinstance(v, str) else "integer" if isinstance(v, int) else "float"
        fields[k] = (kind, v)
    return (p.measurement, p.tags, fields, p.time_ns)


def _untimed(line: bytes) -> bool:
    try:
        return parse_line(line).time_ns is None
    except LineError:
        return False


def judge_expected(case: Case, status: int, message: str, lines: list[bytes], sent_ns: int) -> str | None:
    """None when the collector did what the expectation says, else what differs (one line)."""
    exp = case.expect
    assert exp is not None
    if "error" in exp or "error_suffix" in exp:
        if status != 400:
            return f"expected 400 ({exp.get('error') or exp.get('error_suffix')}), got {status}: stored {lines[:3]!r}"
        return None
    if status != 204:
        return f"expected 204, got {status}: {message[:300]}"
    if "points" not in exp:
        return None
    want = exp["points"]
    got = [_point_of(ln, None) for ln in lines]
    if len(got) != len(want):
        return f"expected {len(want)} point(s), stored {len(got)}: {lines!r}"[:500]
    # Some recorded points of lines without a timestamp carry the recording's clock, not default_time.
    untimed = [_untimed(ln) for ln in split_lines(case.body) if ln.strip(b" \t") and not ln.lstrip(b" \t").startswith(b"#")]
    for n, (g, w) in enumerate(zip(got, want)):
        wf = {k: _typed(t, v) for k, t, v in w["fields"]}
        gf = {k: (kind, float(v) if kind == "float" else v) for k, (kind, v) in g[2].items()}
        if (g[0], g[1], gf) != (w["measurement"], w["tags"], wf):
            return f"expected {w['measurement']!r} {w['tags']} {wf}, stored {g[0]!r} {g[1]} {gf}"
        if w.get("default_time") or (len(untimed) == len(want) and untimed[n]):
            if abs(g[3] - sent_ns) > DEFAULT_TIME_SLACK_NS:
                return f"a line without a timestamp stored at {g[3]}, not the receive time (~{sent_ns})"
        elif g[3] != w["time"]:
            return f"expected time {w['time']}, stored {g[3]}"
    return None


# -- comparison with influxd ---------------------------------------------------------------------


class InfluxdSide:
    """One influxd for every case: the reference in database r<N>, the collector's lines in p<N>."""

    def __init__(self, server) -> None:
        self.server = server
        self._connect()

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def restart(self) -> None:
        self.conn.close()
        if self.server.alive():
            self.server.stop()
        self.server.start()
        self._connect()

    def _call(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, str]:
        try:
            return _post(self.conn, path, body, headers or {})
        except (ConnectionError, http.client.HTTPException, OSError):
            self.conn.close()
            self._connect()
            raise

    def create(self, db: str) -> None:
        self._statement(f'CREATE DATABASE "{db}"')

    def _statement(self, q: str, db: str | None = None) -> list[dict]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        status, text = self._call("/query", urllib.parse.urlencode(params).encode(),
                                  {"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise RuntimeError(f"influxd /query {status}: {text[:300]}")
        return json.loads(text)["results"]

    def write(self, db: str, body: bytes, precision: str) -> tuple[int, str]:
        return self._call("/write?" + _query(precision, db), body)

    def contents(self, db: str) -> tuple:
        """(series with their rows, field keys with types, tag keys), comparable between databases."""
        res = self._statement("SELECT * FROM /.*/; SHOW FIELD KEYS; SHOW TAG KEYS", db)
        out = []
        for r in res:
            out.append(sorted((s.get("name"), s.get("columns"), s.get("values")) for s in r.get("series", [])))
        return tuple(out)


def same_contents(ref: tuple, ours: tuple) -> bool:
    """Equal, with times near now (lines without a timestamp) within DEFAULT_TIME_SLACK_NS."""
    if ref[1:] != ours[1:] or len(ref[0]) != len(ours[0]):
        return False
    now = time.time_ns()
    for (n1, c1, v1), (n2, c2, v2) in zip(ref[0], ours[0]):
        if n1 != n2 or c1 != c2 or len(v1) != len(v2):
            return False
        for r1, r2 in zip(v1, v2):
            if r1[1:] != r2[1:] and not all(_same_value(a, b) for a, b in zip(r1[1:], r2[1:])):
                return False
            if r1[0] != r2[0] and not (abs(r1[0] - now) < 10 * DEFAULT_TIME_SLACK_NS and abs(r1[0] - r2[0]) < DEFAULT_TIME_SLACK_NS):
                return False
    return True


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@dataclass
class Outcome:
    id: str
    against: str  # "expect" or "influxd"
    ok: bool
    detail: str = ""
    excluded: bool = False  # influxd answered 5xx or died
    forged: bool = False  # 204 and less or other than influxd stored


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def judged(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.excluded]

    @property
    def agreement(self) -> float:
        j = self.judged
        return sum(o.ok for o in j) / len(j) if j else 0.0

    def failures(self) -> list[Outcome]:
        return [o for o in self.judged if not o.ok]


def run_corpus(cases: list[Case], influxd, deliberate: dict[str, str]) -> Run:
    """Every case through the collector: against its expectation, or against `influxd` (started)."""
    run = Run()
    expected = [c for c in cases if c.expect is not None]
    open_ = [c for c in cases if c.expect is None]
    # Expectations come from InfluxDB 2.x's parsers, which take unsigned integers: a store that does.
    with Collector(unsigned=True) as col:
        for case in expected:
            sent = time.time_ns()
            status, message, lines = col.write(case)
            detail = judge_expected(case, status, message, lines, sent)
            run.outcomes.append(Outcome(case.id, "expect", detail is None, detail or ""))
    # influxd 1.6.7 has no unsigned integers: the collector as configured in front of it.
    side = InfluxdSide(influxd)
    with Collector(unsigned=False) as col:
        for n, case in enumerate(open_):
            ref_db, our_db = f"r{n}", f"p{n}"
            side.create(ref_db)
            side.create(our_db)
            try:
                ref_status, ref_text = side.write(ref_db, case.body, case.precision)
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                run.outcomes.append(Outcome(case.id, "influxd", True, f"influxd died: {exc}", excluded=True))
                side.restart()
                continue
            if ref_status >= 500 or not influxd.alive():
                run.outcomes.append(Outcome(case.id, "influxd", True, f"influxd answered {ref_status}", excluded=True))
                if not influxd.alive():
                    side.restart()
                continue
            status, message, lines = col.write(case)
            stored_status = 204
            if lines:
                try:
                    stored_status, stored_text = side.write(our_db, b"\n".join(lines) + b"\n", "ns")
                except (ConnectionError, http.client.HTTPException, OSError):
                    stored_status, stored_text = 599, "influxd died on the collector's lines"
                    side.restart()
            ref = side.contents(ref_db)
            ours = side.contents(our_db)
            same_class = (ref_status // 100) == (status // 100)
            same_store = same_contents(ref, ours) and stored_status == 204
            ok = same_class and same_store
            detail = ""
            if not ok:
                detail = (f"influxd {ref_status} {ref_text.strip()[:200]!r} stored {ref[0]!r:.300}; collector {status} "
                          f"{message[:200]!r} stored {ours[0]!r:.300} (store answered {stored_status})")
            why = deliberate.get(case.id)
            if not ok and why:
                detail = f"deliberate ({why}): {detail}"
            forged = status == 204 and not same_store
            run.outcomes.append(Outcome(case.id, "influxd", ok or bool(why), detail, forged=forged and not why))
    return run


if __name__ == "__main__":  # pragma: no cover - a tool for work on the parser
    sys.path.insert(0, str(_HERE.parent))
    from conformance_support import SHARED
    from servers import Influxd
    import tempfile

    cases = load(SHARED / "conformance" / "lineprotocol" / "corpus.jsonl")
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    if only == "expect":
        cases = [c for c in cases if c.expect is not None]
    with tempfile.TemporaryDirectory() as tmp:
        server = Influxd(Path(tmp))
        if only != "expect":
            server.start()
        try:
            t0 = time.monotonic()
            run = run_corpus(cases, server, {})
        finally:
            server.stop()
    for o in run.failures():
        print(f"{o.id} [{o.against}]{' FORGED' if o.forged else ''}: {o.detail}")
    excluded = [o for o in run.outcomes if o.excluded]
    for o in excluded:
        print(f"{o.id}: excluded: {o.detail}")
    print(f"{len(run.judged)} judged, agreement {run.agreement:.4f}, {len(run.failures())} failures, "
          f"{sum(o.forged for o in run.outcomes)} forged, {len(excluded)} excluded, {time.monotonic() - t0:.1f} s")
