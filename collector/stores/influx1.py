"""InfluxDB v1 API: `/write` (a `Store`), `/query` InfluxQL (a `Reader`), and `puewatch influx setup`.

The v1 API is the one thing InfluxDB 1.x, 2.x (v1 compatibility endpoints, DBRP
mapping) and 3.x all answer, so it is how auditors' reports read history:
InfluxQL over `/query` with `epoch=ns`, results streamed in chunks so no server
row limit truncates a year of data.

Authentication: user and password either as HTTP basic auth (default; works on
1.x, and on 2.x/3.x with a token as the password) or as `u`/`p` query parameters
(`auth="params"`, for proxies that strip the Authorization header).

Retention plan created by `puewatch influx setup` (see collector/README.md, "Stores"):

| retention policy | holds | default duration |
|---|---|---|
| `raw` (DEFAULT) | every point as written (agents, meters, derived series) | 30 days |
| `minute` | 1-minute means of the power and PUE series (CQ) | 104 weeks (2 years) |
| `hourly` | hourly sums of the energy series (Wh per hour) (CQ) | 520 weeks (10 years) |

The downsampling is data-driven: `DOWNSAMPLING` lists (measurement, fields,
aggregate, interval, target policy) and nothing else needs to change to add one.
An hourly PUE is recomputed from the hourly sums of its jointly known sides
(`sum_pue_facility_input_wh / sum_pue_it_wh`, over `sum_pue_known_s`: schema.PUE_FACILITY_WH),
a ratio of energies over the time both were known, never as a mean of PUE samples (the
1-minute PUE means are for dashboards) nor from each side's own sums.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import gzip as gzip_module
import io
import json
import logging
import os
import re
import sys
import urllib.parse
import warnings
from collections.abc import Iterator

import numpy as np
import urllib3

from puewatch.core import schema
from puewatch.core.batch import Batch
from puewatch.errors import UserError
from puewatch.redact import redact_text, redact_url

from .base import StoreRejected, StoreUnavailable

log = logging.getLogger("puewatch.collector.stores.influx1")

__all__ = [
    "DOWNSAMPLING",
    "Downsample",
    "Influx1Store",
    "RetentionPlan",
    "quote_ident",
    "quote_string",
    "setup",
    "setup_statements",
]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes (backslash and double quote escaped)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal in single quotes (backslash and single quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _influxql_number(x: float) -> str:
    """A float as an InfluxQL literal: its shortest digits, positional (InfluxQL reads no exponent), with a
    point (a literal without one is an integer, refused past int64)."""
    text = np.format_float_positional(float(x), unique=True, trim="-")
    return text if "." in text else text + ".0"


class Influx1Store:
    """`Store` and `Reader` over the InfluxDB v1 HTTP API."""

    # Queries a report keeps in flight (`stream_store`): a server answers each on its own
    # cores. Measured with influxd and the report sharing two cores, 8 meter-years: 9.0-9.1 s
    # one ahead, 8.2-8.3 s three ahead; a server on its own cores gains more.
    read_ahead = 3

    def __init__(
        self,
        url: str,
        database: str,
        *,
        rp: str | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        auth: str = "basic",
        gzip: bool = False,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        verify_ssl: bool = True,
        chunk_size: int = 10_000,
        credentials_hint: str | None = None,
    ) -> None:
        """`credentials_hint`: what a 401 tells the user to give, in the words of what it runs under (a command's
        options); the store's config keys by default."""
        if auth not in ("basic", "params"):
            raise UserError(f"influx auth must be 'basic' or 'params', not {auth!r}")
        if token is not None and user is not None:
            raise UserError("influx: give a user and password, or a token, not both")
        self.url = url.rstrip("/")
        self.database = database
        self.rp = rp
        self.gzip = gzip
        self.chunk_size = chunk_size
        self.name = f"influx1 {redact_url(self.url)} db={database}" + (f" rp={rp}" if rp else "")
        self._headers: dict[str, str] = {}
        self._auth_params: dict[str, str] = {}
        self._token = token is not None
        self._credentials_hint = credentials_hint or "give a user and password (InfluxDB 1.x) or a token (2.x, 3.x)"
        if token is not None:
            # The v1 compatibility API of InfluxDB 2.x and 3.x: `Authorization: Token <API token>`.
            self._headers["Authorization"] = f"Token {token}"
        if user is not None:
            if auth == "basic":
                token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
                self._headers["Authorization"] = f"Basic {token}"
            else:
                self._auth_params = {"u": user, "p": password or ""}
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=self.read_ahead + 1,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=timeout_s),
            cert_reqs="CERT_REQUIRED" if verify_ssl else "CERT_NONE",
        )

    # -- Store ----------------------------------------------------------------------------------

    def write(self, body: bytes, rp: str | None = None) -> None:
        """POST /write?db=&rp=&precision=ns; StoreUnavailable or StoreRejected (with the server's message)."""
        if not body:
            return
        params = {"db": self.database, "precision": "ns", **self._auth_params}
        if rp or self.rp:
            params["rp"] = rp or self.rp
        headers = dict(self._headers, **{"Content-Type": "text/plain; charset=utf-8"})
        if self.gzip:
            body = gzip_module.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        resp = self._request("POST", "/write", params, body, headers)
        if resp.status != 204 and resp.status != 200:
            self._raise(resp, "write")

    def write_batch(self, batch: Batch) -> None:
        """A typed batch, encoded to line protocol here: the wire is the only place it is text."""
        self.write(batch.to_line_protocol())

    def ping(self) -> bool:
        """Whether influxd answers GET /ping now (the store writer tells a dead store from a
        batch that kills it by this)."""
        try:
            return self._request("GET", "/ping", {}, None, self._headers).status == 204
        except StoreUnavailable:
            return False

    def close(self) -> None:
        self._http.clear()

    def _request(self, method: str, path: str, params: dict[str, str], body: bytes | None, headers: dict[str, str],
                 preload: bool = True) -> urllib3.BaseHTTPResponse:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            return self._http.request(method, url, body=body, headers=headers, preload_content=preload)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise StoreUnavailable(f"{self.name}: {redact_text(' '.join(str(reason).split()))[:300]}") from None

    def _raise(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        message = _server_message(resp)
        status = resp.status
        if status == 401:
            message = f"authentication failed ({message}); " + (
                "the server refused the token (InfluxDB 1.x takes a user and password, not a token)" if self._token
                else self._credentials_hint)
        elif status == 403:
            message = f"permission denied ({message}); the user needs {what} access to {self.database!r}"
        if status == 429 or status >= 500:
            raise StoreUnavailable(f"{self.name}: {what}: HTTP {status}: {message}")
        raise StoreRejected(f"{self.name}: {what}: HTTP {status}: {message}", status)

    # -- InfluxQL -------------------------------------------------------------------------------

    def query(self, q: str, *, database: str | None = None, write: bool = False) -> list[dict]:
        """Run InfluxQL; returns every statement's result (`series` lists). A statement error raises StoreRejected."""
        return list(self._query_chunks(q, database=database, write=write, chunked=False))

    def _query_chunks(self, q: str, *, database: str | None = None, write: bool = False, chunked: bool = True) -> Iterator[dict]:
        for doc in self._query_docs(q, database=database, write=write, chunked=chunked):
            yield from self._results(doc, q)

    def _query_docs(self, q: str, *, database: str | None = None, write: bool = False, chunked: bool = True
                    ) -> Iterator[bytes]:
        """The answer's JSON documents, undecoded (a chunked answer is one document per line)."""
        params = {"q": q, "epoch": "ns", **self._auth_params}
        db = self.database if database is None else database
        if db:
            params["db"] = db
        if chunked:
            params["chunked"] = "true"
            params["chunk_size"] = str(self.chunk_size)
        # POST for statements that change things (the 1.x API refuses them on GET).
        method = "POST" if write else "GET"
        body = None
        headers = dict(self._headers)
        if write:
            body = urllib.parse.urlencode(params).encode()
            params = {}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        resp = self._request(method, "/query", params, body, headers, preload=False)
        try:
            if resp.status != 200:
                resp.read()
                self._raise(resp, "query")
            # A line (a chunk of 10,000 points is about 400 kB) arrives in many reads: newlines
            # are looked for in each read only, and the pieces joined once.
            pieces: list[bytes] = []
            for data in resp.stream(1 << 20):
                pos = 0
                while (nl := data.find(b"\n", pos)) >= 0:
                    pieces.append(data[pos:nl])
                    line = b"".join(pieces)
                    pieces = []
                    if line.strip():
                        yield line
                    pos = nl + 1
                pieces.append(data[pos:])
            line = b"".join(pieces)
            if line.strip():
                yield line
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnavailable(f"{self.name}: query interrupted: {exc}") from None
        finally:
            resp.release_conn()

    def _results(self, doc: bytes, q: str) -> Iterator[dict]:
        data = json.loads(doc)
        for error in [data.get("error")] + [r.get("error") for r in data.get("results", [])]:
            if error:
                if self._token and "database not found" in error:
                    error += (f" (on InfluxDB 2.x, map the bucket to the database {self.database!r}: "
                              "influx v1 dbrp create --db NAME --rp autogen --bucket-id ID --default)")
                raise StoreRejected(f"{self.name}: query {q[:200]!r}: {error}")
        results = data.get("results", [])
        if q.startswith("SELECT "):
            # An InfluxQL SELECT answers series whose first column is time. A server that does not speak
            # InfluxQL may answer 200 all the same (VictoriaMetrics answers every /query as SHOW DATABASES).
            for r in results:
                for s in r.get("series", []):
                    cols = s.get("columns") or []
                    if cols[:1] != ["time"]:
                        raise StoreRejected(
                            f"{self.name}: the server answered an InfluxQL SELECT with series {s.get('name')!r} of "
                            f"columns {cols[:4]}, not times: it does not serve InfluxQL queries (VictoriaMetrics "
                            "takes writes only); `report`, `export` and `jobs` read a store over InfluxQL: InfluxDB "
                            "1.x, or the v1 query API of InfluxDB 2.x or 3.x")
        yield from results

    # -- Reader ---------------------------------------------------------------------------------

    def _select(self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int,
                rp: str | None, *, raw: bool = False) -> str:
        """InfluxQL for one field of the series with all `tags`, start_ns <= time < end_ns (`raw`: `field` is an
        expression, written as it is)."""
        source = quote_ident(measurement)
        rp = rp or self.rp
        if rp:
            source = f"{quote_ident(rp)}.{source}"
        where = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
        where += [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(tags.items())]
        return f"SELECT {field if raw else quote_ident(field)} FROM {source} WHERE {' AND '.join(where)}"

    def series(
        self,
        measurement: str,
        field: str,
        tags: dict[str, str],
        start_ns: int,
        end_ns: int,
        *,
        rp: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(time int64 ns ascending, value float64) for start_ns <= t < end_ns; `rp` reads another policy."""
        q = self._select(measurement, field, tags, start_ns, end_ns, rp)
        t_parts: list[np.ndarray] = []
        v_parts: list[np.ndarray] = []
        for doc in self._query_docs(q):
            fast = _numeric_values(doc)
            if fast is not None:
                t_parts.append(fast[0])
                v_parts.append(fast[1])
                continue
            times: list[int] = []
            values: list[float] = []
            for result in self._results(doc, q):
                for s in result.get("series", []):
                    for t, v in s.get("values", []):
                        if v is None:
                            continue
                        if isinstance(v, str):
                            raise StoreRejected(f"{self.name}: {measurement}.{field} holds strings, not numbers")
                        times.append(t)
                        values.append(float(v))
            t_parts.append(np.asarray(times, dtype=np.int64))
            v_parts.append(np.asarray(values, dtype=np.float64))
        if not t_parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t_arr = np.concatenate(t_parts) if len(t_parts) > 1 else t_parts[0]
        v_arr = np.concatenate(v_parts) if len(v_parts) > 1 else v_parts[0]
        if t_arr.size > 1 and np.any(np.diff(t_arr) < 0):
            order = np.argsort(t_arr, kind="stable")
            t_arr, v_arr = t_arr[order], v_arr[order]
        return t_arr, v_arr

    def series_read(self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int, *,
                    rp: str | None = None) -> list[dict[str, str]]:
        """The tags of each series with `tags` that holds a point of `field` in start_ns <= t < end_ns, where
        more than one series has them (else [])."""
        q = self._select(measurement, f"count({quote_ident(field)})", tags, start_ns, end_ns, rp, raw=True) + \
            " GROUP BY *"
        found = []
        for result in self._query_chunks(q, chunked=False):
            for s in result.get("series", []):
                if any(row[1] for row in s.get("values", [])):
                    found.append({k: v for k, v in (s.get("tags") or {}).items() if v != ""})
        return found if len(found) > 1 else []

    def text_series(
        self, measurement: str, field: str, tags: dict[str, str], start_ns: int, end_ns: int, *, rp: str | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """(time int64 ns ascending, values) of a string field (an agent's `gpu_info`) for start_ns <= t < end_ns."""
        q = self._select(measurement, field, tags, start_ns, end_ns, rp)
        rows: list[tuple[int, str]] = []
        for result in self._query_chunks(q):
            for s in result.get("series", []):
                for t, v in s.get("values", []):
                    if v is None:
                        continue
                    if not isinstance(v, str):
                        raise StoreRejected(f"{self.name}: {measurement}.{field} holds numbers, not strings")
                    rows.append((int(t), v))
        rows.sort(key=lambda r: r[0])
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows]

    def fields_by_series(self, measurement: str, kinds: dict[str, str], start_ns: int, end_ns: int, *,
                         rp: str | None = None) -> list[tuple[dict[str, str], np.ndarray, dict[str, np.ndarray]]]:
        """Every series of `measurement` with a point of one of `kinds` (field -> "number" or "string")
        in start_ns <= t < end_ns: (tags, times ascending, field -> column aligned with the times).

        One query for the whole measurement (`GROUP BY *`), not one per series and field: a site's
        job ledger is thousands of series. A number column is float64 (booleans 1/0, NaN where the
        row lacks the field), a string column an object array (None where it lacks it).
        StoreRejected when a field holds the other kind.
        """
        source = quote_ident(measurement)
        if rp or self.rp:
            source = f"{quote_ident(rp or self.rp)}.{source}"
        q = (f"SELECT {', '.join(quote_ident(f) for f in kinds)} FROM {source} "
             f"WHERE time >= {int(start_ns)} AND time < {int(end_ns)} GROUP BY *")
        # Each chunk's rows become arrays at once: a day of a large site is millions of rows, never
        # kept as Python lists.
        parts_by_series: dict[tuple, tuple[dict[str, str], list]] = {}
        for result in self._query_chunks(q):
            for s in result.get("series", []):
                tags = {k: v for k, v in (s.get("tags") or {}).items() if v != ""}
                part = self._columns(measurement, kinds, s.get("columns", []), s.get("values", []))
                parts_by_series.setdefault(tuple(sorted(tags.items())), (tags, []))[1].append(part)
        out = []
        for tags, parts in parts_by_series.values():
            t = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            fields = {name: (np.concatenate([p[1][name] for p in parts]) if len(parts) > 1 else parts[0][1][name])
                      for name in kinds}
            if t.size > 1 and not bool(np.all(t[1:] > t[:-1])):
                order = np.argsort(t, kind="stable")
                t, fields = t[order], {k: c[order] for k, c in fields.items()}
            out.append((tags, t, fields))
        return out

    def _columns(self, measurement: str, kinds: dict[str, str], columns: list[str], rows: list[list]
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One answer's rows (time first) as times and a column per field of `kinds`."""
        cols = list(zip(*rows)) if rows else [()] * len(columns)
        t = np.array(cols[0], dtype=np.int64) if rows else np.empty(0, np.int64)
        fields: dict[str, np.ndarray] = {}
        for name, col in zip(columns[1:], cols[1:]):
            if name not in kinds:
                continue
            # InfluxDB keeps one type per field (and shard): one value tells the column's.
            sample = next((v for v in col if v is not None), None)
            if kinds[name] == "string":
                if sample is not None and not isinstance(sample, str):
                    raise StoreRejected(f"{self.name}: {measurement}.{name} holds numbers, not strings")
                memo: dict = {}
                fields[name] = np.empty(len(col), object)
                fields[name][:] = [memo.setdefault(v, v) for v in col]  # one object per distinct text, not per row
            else:
                if isinstance(sample, str):
                    raise StoreRejected(f"{self.name}: {measurement}.{name} holds strings, not numbers")
                fields[name] = np.array(col, dtype=np.float64)  # null -> NaN, true/false -> 1/0
        for name, kind in kinds.items():  # a field no point of the answer has
            if name not in fields:
                fields[name] = np.full(t.size, None, object) if kind == "string" else np.full(t.size, np.nan)
        return t, fields

    def time_range(self, measurement: str, field: str, tags: dict[str, str], *, rp: str | None = None
                   ) -> tuple[int, int] | None:
        """(first, last) time in ns of the points of `field` in every series with `tags`, or None when there are none."""
        source = quote_ident(measurement)
        if rp or self.rp:
            source = f"{quote_ident(rp or self.rp)}.{source}"
        where = " AND ".join(f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(tags.items()))
        times = []
        for fn in ("first", "last"):
            q = f"SELECT {fn}({quote_ident(field)}) FROM {source}" + (f" WHERE {where}" if where else "")
            for result in self._query_chunks(q, chunked=False):
                for s in result.get("series", []):
                    for row in s.get("values", []):
                        times.append(int(row[0]))
        return (min(times), max(times)) if times else None

    def neighbours(self, measurement: str, field: str, tags: dict[str, str], before_ns: int, after_ns: int, *,
                   values: tuple[float, float | None] | None = None, rp: str | None = None
                   ) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
        """The last point of `field` before `before_ns` and the first at or after `after_ns`, in every series
        with `tags` taken together (None where there is none): a report's readings just outside its window.
        With `values` (at_least, below; below None: no bound), only a point whose value lies in that range
        counts."""
        source = quote_ident(measurement)
        if rp or self.rp:
            source = f"{quote_ident(rp or self.rp)}.{source}"
        where = [f"{quote_ident(k)} = {quote_string(v)}" for k, v in sorted(tags.items())]
        if values is not None:
            where.append(f"{quote_ident(field)} >= {_influxql_number(values[0])}")
            if values[1] is not None:
                where.append(f"{quote_ident(field)} < {_influxql_number(values[1])}")
        out: list[tuple[int, float] | None] = []
        for bound, order in ((f"time < {int(before_ns)}", " ORDER BY time DESC"), (f"time >= {int(after_ns)}", "")):
            q = f"SELECT {quote_ident(field)} FROM {source} WHERE {' AND '.join([bound, *where])}{order} LIMIT 1"
            found = None
            for result in self._query_chunks(q, chunked=False):
                for s in result.get("series", []):
                    for t, v in s.get("values", []):
                        if isinstance(v, str):
                            raise StoreRejected(f"{self.name}: {measurement}.{field} holds strings, not numbers")
                        if v is not None and found is None:
                            found = (int(t), float(v))
            out.append(found)
        return out[0], out[1]

    def retention_s(self) -> float | None:
        """How long the database keeps what this store writes (its retention policy: the configured one, else
        the database's default), in seconds; None where it keeps it for ever (duration 0). From `SHOW RETENTION
        POLICIES`: ingest refuses older lines with it, as InfluxDB would after a 204 (the embedded store's
        raw retention likewise). StoreRejected where the policy is not there."""
        want = self.rp
        for result in self.query(f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}"):
            for s in result.get("series", []):
                cols = s.get("columns", [])
                for row in s.get("values", []):
                    r = dict(zip(cols, row))
                    if (r.get("name") == want) if want else r.get("default"):
                        try:
                            seconds = go_duration_s(str(r.get("duration", "")))
                        except ValueError as exc:
                            raise StoreRejected(f"{self.name}: retention policy {r.get('name')!r}: {exc}") from None
                        return seconds or None
        raise StoreRejected(f"{self.name}: no retention policy {want or '(default)'} on database {self.database!r}")

    def field_types(self) -> dict[tuple[str, str], str]:
        """(measurement, field) -> InfluxDB type of what the database (its configured retention policy)
        holds, from `SHOW FIELD KEYS`: what the collector's ingest check starts with. InfluxDB keeps
        types per shard; a field with two types (an older shard holding another) is left out: the store
        decides it."""
        q = "SHOW FIELD KEYS" + (f" FROM {quote_ident(self.rp)}./.*/" if self.rp else "")
        out: dict[tuple[str, str], str] = {}
        twice: set[tuple[str, str]] = set()
        for result in self.query(q):
            for s in result.get("series", []):
                for key, kind in s.get("values", []):
                    if out.setdefault((s["name"], key), kind) != kind:
                        twice.add((s["name"], key))
        for k in twice:
            del out[k]
        return out

    def tag_values(self, measurement: str, tag: str) -> list[str]:
        q = f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(tag)}"
        out = set()
        for result in self._query_chunks(q, chunked=False):
            for s in result.get("series", []):
                for _key, value in s.get("values", []):
                    out.add(value)
        return sorted(out)


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns)")
_GO_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration_s(text: str) -> float:
    """A Go duration as InfluxDB writes a policy's (`720h0m0s`, `0s`) in seconds; ValueError for anything else."""
    parts = _GO_DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _GO_UNIT_S[u] for n, u in parts)


_VALUES = b'"values":['
_ROW = np.dtype([("t", "<i8"), ("v", "<f8")])


def _numeric_values(doc: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(times, values) of a one-series answer holding numbers only, or None for anything else.

    A year of 1-minute readings is half a million points per series; `json.loads` builds a
    list and two numbers per point, then the caller copies them out again. The rows
    `[t,v],[t,v],...` of such an answer are plain CSV once `],[` is a newline, which NumPy's
    C parser reads straight into int64 times (exact, unlike a float) and float64 values.
    Anything else (an error, several series, a null, a string or boolean value, more
    columns) returns None and goes the `json` way.
    """
    i = doc.find(_VALUES)
    if i < 0 or doc.find(_VALUES, i + 1) >= 0 or b'"error"' in doc:
        return None
    j = doc.find(b"]]", i)
    if j < 0:
        return None
    rows = doc[i + len(_VALUES) + 1 : j]  # t,v],[t,v],...,[t,v
    if rows.translate(None, b"0123456789.-+eE,[]"):
        return None  # not numbers only
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(io.BytesIO(rows.replace(b"],[", b"\n")), delimiter=",", dtype=_ROW, ndmin=1)
    except ValueError:
        return None
    return np.ascontiguousarray(arr["t"], dtype=np.int64), np.ascontiguousarray(arr["v"], dtype=np.float64)


def _server_message(resp: urllib3.BaseHTTPResponse) -> str:
    """InfluxDB 1.x answers {"error": "..."}, 2.x/3.x {"message": "..."}; else the body or the reason."""
    data = resp.data or b""
    text = ""
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            text = doc.get("error") or doc.get("message") or ""
    except ValueError:
        pass
    if not text:
        text = resp.headers.get("X-Influxdb-Error") or data.decode("utf-8", "replace") or resp.reason or ""
    return " ".join(str(text).split())[:500]


# -- retention policies and continuous queries ------------------------------------------------------

_DURATION = re.compile(r"^([1-9][0-9]*)(h|d|w)$")
_UNIT_S = {"h": 3600, "d": 86400, "w": 7 * 86400}


def duration_seconds(text: str, what: str) -> int:
    """An InfluxQL retention duration (`30d`, `104w`, `12h`; minimum 1h) in seconds; 0 for INF."""
    if text.upper() == "INF":
        return 0
    m = _DURATION.match(text)
    if not m:
        raise UserError(f"{what}: {text!r} is not a duration like 30d, 104w or 12h (or INF)")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def _go_duration_seconds(text: str) -> int:
    """`720h0m0s` (what SHOW RETENTION POLICIES answers) in seconds; 0 is infinite."""
    total = 0
    for value, unit in re.findall(r"([0-9.]+)(h|m|s)", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return int(total)


@dataclasses.dataclass(frozen=True)
class Downsample:
    """One continuous query: `aggregate` of `fields` of `measurement` in the raw policy, per
    `interval`, written to the same measurement in `target_rp` with the same tags.

    fields None means every numeric field (`aggregate(*)`): InfluxDB names the results
    `<aggregate>_<field>` (e.g. `mean_power_w`). Listed fields keep their names.

    Energy cells (`schema.CELL_MEASUREMENTS`) are each the interval (t - cell, t], stamped at its
    end t. InfluxDB's groups are [start, start + interval), which would put
    the cell ending on the hour in the hour after it; grouped with an offset of 1 ns they are
    (start, start + interval], each stamped at its start + 1 ns: an hour's sum is that hour's
    cells. Readings and ratios are values at their time and keep InfluxDB's groups.
    """

    measurement: str
    fields: tuple[str, ...] | None
    aggregate: str
    interval: str
    target_rp: str
    where: str | None = None  # only the points of the series this selects (InfluxQL on tags)

    @property
    def name(self) -> str:
        return f"puewatch_{self.measurement}_{self.aggregate}_{self.interval}"

    @property
    def cells(self) -> bool:
        """Its points are end-stamped energy cells: grouped (start, start + interval]."""
        return self.measurement in schema.CELL_MEASUREMENTS


# The one place that says what is downsampled: what the collector and the agents write
# (puewatch/core/schema.py names it all). Power and ratio series: 1-minute means; energy
# series (Wh per cell): hourly sums, so the hourly Wh add up to the raw ones. Of the SNMP
# readings only those in W: a mean of a register's Wh counts nothing.
DOWNSAMPLING: tuple[Downsample, ...] = (
    Downsample(schema.SNMP_READING, (schema.SNMP_VALUE,), "mean", "1m", "minute", where="\"unit\" = 'W'"),
    Downsample(schema.GPU_POWER, schema.GPU_POWER_FIELDS, "mean", "1m", "minute"),
    Downsample(schema.PUE, None, "mean", "1m", "minute"),
    Downsample(schema.PPUE, None, "mean", "1m", "minute"),
    Downsample(schema.SITE_ENERGY, None, "sum", "1h", "hourly"),
    Downsample(schema.ZONE_ENERGY, None, "sum", "1h", "hourly"),
    Downsample(schema.METER_ENERGY, None, "sum", "1h", "hourly"),
    Downsample(schema.GPU_ENERGY, None, "sum", "1h", "hourly"),
)

# How far back each CQ run recomputes (RESAMPLE ... FOR): late points (a spool replayed
# after an outage) inside this window still reach the downsampled series.
RESAMPLE = {"1m": ("1m", "15m"), "1h": ("15m", "3h")}


@dataclasses.dataclass(frozen=True)
class RetentionPlan:
    database: str
    raw: str = "30d"
    minute: str = "104w"
    hourly: str = "520w"
    raw_rp: str = "raw"
    minute_rp: str = "minute"
    hourly_rp: str = "hourly"
    downsampling: tuple[Downsample, ...] = DOWNSAMPLING
    # interval -> (EVERY, FOR); tests use a 1 s EVERY to see the CQs run.
    resample: dict[str, tuple[str, str]] = dataclasses.field(default_factory=lambda: dict(RESAMPLE))

    def policies(self) -> list[tuple[str, str, bool]]:
        """(name, duration, default) per retention policy."""
        return [(self.raw_rp, self.raw, True), (self.minute_rp, self.minute, False), (self.hourly_rp, self.hourly, False)]

    def validate(self) -> None:
        for name, duration, _ in self.policies():
            seconds = duration_seconds(duration, f"retention of {name!r}")
            if 0 < seconds < 3600:
                raise UserError(f"retention of {name!r}: {duration} is shorter than InfluxDB's minimum of 1h")
        rps = {rp for rp, _, _ in self.policies()}
        for d in self.downsampling:
            if d.target_rp not in rps:
                raise UserError(f"downsampling {d.name}: unknown retention policy {d.target_rp!r}")
            if d.interval not in self.resample:
                raise UserError(f"downsampling {d.name}: no resample window for interval {d.interval!r}")

    def cq_statement(self, d: Downsample) -> str:
        db = quote_ident(self.database)
        if d.fields is None:
            select = f"{d.aggregate}(*)"
        else:
            select = ", ".join(f"{d.aggregate}({quote_ident(f)}) AS {quote_ident(f)}" for f in d.fields)
        every, for_ = self.resample[d.interval]
        return (
            f"CREATE CONTINUOUS QUERY {quote_ident(d.name)} ON {db} RESAMPLE EVERY {every} FOR {for_} BEGIN "
            + self.select_into(d, select_only=select)
            + " END"
        )

    def backfill(self, d: Downsample, start_ns: int, end_ns: int) -> str:
        """The SELECT ... INTO that recomputes the groups of [start_ns, end_ns) by hand (after an outage longer
        than the CQs' FOR), both whole groups (multiples of the interval). Energy cells are grouped
        (h, h + 1h] (`Downsample`): their range is time > start AND time <= end, where the natural
        time >= start AND time < end would rewrite the group before with its one cell at start (InfluxDB keeps
        the last write at a time) and miss the cell at end (found by the review)."""
        ops = (">", "<=") if d.cells else (">=", "<")
        return self.select_into(d, where=f"time {ops[0]} {int(start_ns)} AND time {ops[1]} {int(end_ns)}")

    def select_into(self, d: Downsample, select_only: str | None = None, where: str | None = None) -> str:
        """The CQ's SELECT ... INTO (also run by hand to backfill a time range with `where`: see `backfill`)."""
        db = quote_ident(self.database)
        if select_only is None:
            select_only = (
                f"{d.aggregate}(*)"
                if d.fields is None
                else ", ".join(f"{d.aggregate}({quote_ident(f)}) AS {quote_ident(f)}" for f in d.fields)
            )
        m = quote_ident(d.measurement)
        q = (
            f"SELECT {select_only} INTO {db}.{quote_ident(d.target_rp)}.{m} "
            f"FROM {db}.{quote_ident(self.raw_rp)}.{m}"
        )
        conditions = [c for c in (d.where, where) if c]
        if conditions:
            # One condition as it is (InfluxDB re-renders a stored CQ without brackets: setup stays idempotent).
            q += " WHERE " + (conditions[0] if len(conditions) == 1 else " AND ".join(f"({c})" for c in conditions))
        return q + f" GROUP BY time({d.interval}{', 1ns' if d.cells else ''}), *"


def setup_statements(plan: RetentionPlan, existing_rps: dict[str, tuple[int, bool]] | None = None,
                     existing_cqs: dict[str, str] | None = None) -> list[str]:
    """The InfluxQL that brings the server to `plan`. With the server's current state
    (`existing_rps`: name -> (seconds, default); `existing_cqs`: name -> query) only what
    differs is changed; without it (dry run against nothing), everything is created."""
    plan.validate()
    db = quote_ident(plan.database)
    out = [f"CREATE DATABASE {db}"]
    existing_rps = existing_rps or {}
    for name, duration, default in plan.policies():
        seconds = duration_seconds(duration, f"retention of {name!r}")
        # InfluxDB's own shard durations: 1h under 2 days (a shard may not outlast its policy: a 12h retention
        # with 1d shards was refused, after the policies before it were changed), 1d to 6 months, else 7d.
        shard = "1h" if 0 < seconds < 2 * 86400 else "1d" if 0 < seconds <= 180 * 86400 else "7d"
        tail = f"DURATION {duration} REPLICATION 1 SHARD DURATION {shard}" + (" DEFAULT" if default else "")
        if name not in existing_rps:
            out.append(f"CREATE RETENTION POLICY {quote_ident(name)} ON {db} {tail}")
        elif existing_rps[name] != (seconds, default):
            out.append(f"ALTER RETENTION POLICY {quote_ident(name)} ON {db} {tail}")
    existing_cqs = existing_cqs or {}
    wanted = {d.name: plan.cq_statement(d) for d in plan.downsampling}
    for name, stmt in wanted.items():
        if name in existing_cqs:
            if _same_cq(existing_cqs[name], stmt):
                continue
            out.append(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {db}")
        out.append(stmt)
    for name in sorted(existing_cqs):
        if name.startswith("puewatch_") and name not in wanted:
            out.append(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {db}")
    return out


def _same_cq(stored: str, wanted: str) -> bool:
    """InfluxDB stores the CQ as it re-renders it; compare without quotes, case and spacing."""

    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s.replace('"', "")).strip().lower()

    return norm(stored) == norm(wanted)


def _server_state(store: Influx1Store, database: str) -> tuple[dict[str, tuple[int, bool]], dict[str, str]]:
    rps: dict[str, tuple[int, bool]] = {}
    dbs = store.query("SHOW DATABASES", database="")
    names = {row[0] for r in dbs for s in r.get("series", []) for row in s.get("values", [])}
    if database in names:
        for r in store.query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}", database=""):
            for s in r.get("series", []):
                cols = s["columns"]
                for row in s.get("values", []):
                    rec = dict(zip(cols, row))
                    rps[rec["name"]] = (_go_duration_seconds(rec["duration"]), bool(rec["default"]))
    cqs: dict[str, str] = {}
    for r in store.query("SHOW CONTINUOUS QUERIES", database=""):
        for s in r.get("series", []):
            if s.get("name") == database:
                for name, query in s.get("values", []):
                    cqs[name] = query
    return rps, cqs


def setup(store: Influx1Store, plan: RetentionPlan, dry_run: bool = False) -> list[str]:
    """Create or update the database, retention policies and CQs; returns the statements run."""
    if dry_run:
        return setup_statements(plan)
    try:
        rps, cqs = _server_state(store, plan.database)
        statements = setup_statements(plan, rps, cqs)
        for stmt in statements:
            store.query(stmt, database="", write=True)
        # What the server kept: a server that answers InfluxQL with 200 and keeps nothing (VictoriaMetrics
        # takes writes only) made setup report its changes as done (found by the InfluxDB audit).
        rps, cqs = _server_state(store, plan.database)
    except StoreUnavailable as exc:
        raise UserError(f"cannot reach InfluxDB: {exc}") from None
    except StoreRejected as exc:
        admin = ("; influx setup needs an InfluxDB admin user (it creates the database, its retention policies and "
                 "continuous queries)") if exc.status == 403 else ""
        raise UserError(f"{exc}{admin}") from None
    missing = [f"retention policy {name!r}" for name, duration, default in plan.policies()
               if rps.get(name) != (duration_seconds(duration, name), default)]
    missing += [f"continuous query {d.name!r}" for d in plan.downsampling if d.name not in cqs]
    if missing:
        raise UserError(f"{store.name}: the server answered every statement but does not have {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''}: is it InfluxDB 1.x (or a 2.x/3.x v1 API that keeps "
                        "retention policies and continuous queries)? VictoriaMetrics and others take writes only")
    return statements


def main(args: argparse.Namespace) -> int:
    """`puewatch influx setup`."""
    user = args.user if args.user is not None else os.environ.get("PUEWATCH_INFLUX_USER")
    password = args.password if args.password is not None else os.environ.get("PUEWATCH_INFLUX_PASSWORD")
    if password is not None and user is None:
        raise UserError("--password given without --user (or PUEWATCH_INFLUX_USER)")
    plan = RetentionPlan(
        database=args.database,
        raw=args.raw_retention,
        minute=args.minute_retention,
        hourly=args.hourly_retention,
    )
    if not args.database:
        raise UserError("--database must not be empty")
    store = Influx1Store(args.url, args.database, user=user, password=password, timeout_s=args.timeout,
                         credentials_hint="give an admin's --user and --password (or PUEWATCH_INFLUX_USER and "
                         "PUEWATCH_INFLUX_PASSWORD); InfluxDB 2.x and 3.x take an API token as the password")
    try:
        statements = setup(store, plan, dry_run=args.dry_run)
    finally:
        store.close()
    if args.dry_run:
        for stmt in statements:
            print(stmt + ";")
        return 0
    changed = [s for s in statements if not s.startswith("CREATE DATABASE")]
    print(f"InfluxDB {args.url} database {args.database!r}: " + (f"{len(changed)} change(s)" if changed else "up to date"))
    for stmt in changed:
        print("  " + stmt)
    sys.stdout.flush()
    return 0

