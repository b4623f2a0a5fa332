"""Typed, columnar batches: how points travel inside the collector.

A `Batch` is an ordered list of parts. A typed part (`Block`) is one series (measurement,
tags) with a column of times (int64 ns) and one column per field: float64, int64, bool or
str (an object array; None for no value). A float value that is NaN or infinite is no
value (InfluxDB cannot store it): a row without any value is never added, so every row of
a batch is one stored line. The other part is line protocol as it arrived (an agent's
request body, already validated and normalised to ns by the ingest parser), kept as bytes:
the InfluxDB stores send it on unchanged, and only the embedded store parses it (once,
with the fast columnar parser, `collector.lineparse.parse_columns`).

Names and tags are checked when a block is added (`puewatch.lineprotocol`'s rules), so a
batch can always be sent over the wire. Line protocol is encoded only there
(`to_line_protocol`), by the InfluxDB stores at write time.

On disk (the store writer's spool) a batch is `encode()`d: a short magic, the length of a
JSON header that lists the parts (names, tags, field kinds, row counts, and string
columns, which are rare: an agent's `gpu_info`), then every numeric column's raw
little-endian bytes in header order and the line protocol parts as they are. One memcpy
per column each way, exact (floats bit for bit), and readable without puewatch with a few
lines of NumPy. `decode()` also reads a spool file from before typed batches (plain line
protocol).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from puewatch.lineprotocol import encode_line, escape_key, series_key

__all__ = ["Batch", "Block", "BatchError", "decode", "encode"]

MAGIC = b"PWBATCH1"
# Field kinds and their column dtypes ("s": object array of str or None).
_DTYPES = {"f": np.dtype("<f8"), "i": np.dtype("<i8"), "b": np.dtype("?")}


class BatchError(ValueError):
    """A batch that cannot be built or read back (the message says what is wrong)."""


@dataclass(slots=True)
class Block:
    """One series' rows: times (int64 ns) and a column per field, all of one length."""

    measurement: str
    tags: dict[str, str]
    time_ns: np.ndarray
    fields: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.time_ns.shape[0])


def _kind(col: np.ndarray) -> str:
    return "s" if col.dtype == object else col.dtype.kind


def _present(col: np.ndarray) -> np.ndarray | None:
    """Which rows hold a value (None: all of them)."""
    if col.dtype.kind == "f":
        return np.isfinite(col)
    if col.dtype == object:
        return np.array([x is not None for x in col.tolist()], dtype=bool)
    return None


def _column(name: str, values: Any, n: int) -> np.ndarray:
    col = np.asarray(values)
    if col.ndim == 0:
        col = np.full(n, col.item(), dtype=object if col.dtype.kind in "USO" else col.dtype)
    if col.shape != (n,):
        raise BatchError(f"field {name!r}: {col.shape[0] if col.ndim == 1 else col.shape} values for {n} times")
    kind = col.dtype.kind
    if kind == "f":
        return col.astype(np.float64, copy=False)
    if kind == "b":
        return col
    if kind in "iu":
        if kind == "u" and n and col.max() > np.iinfo(np.int64).max:
            raise BatchError(f"field {name!r}: integer beyond int64")
        return col.astype(np.int64, copy=False)
    if kind in "UO":
        out = np.empty(n, dtype=object)
        for i, x in enumerate(col.tolist()):
            if x is not None and not isinstance(x, str):
                raise BatchError(f"field {name!r}: {type(x).__name__} in a column of strings")
            if x is not None and ("\n" in x or "\r" in x):
                raise BatchError(f"field {name!r}: string value contains a newline")
            out[i] = x
        return out
    raise BatchError(f"field {name!r}: unsupported dtype {col.dtype}")


class Batch:
    """Points on their way to a store: typed blocks and line protocol bodies, in order."""

    __slots__ = ("parts", "points")

    def __init__(self) -> None:
        self.parts: list[Block | bytes] = []
        self.points = 0  # lines: typed rows plus line protocol lines

    def __len__(self) -> int:
        return self.points

    def __bool__(self) -> bool:
        return self.points > 0

    def add(self, measurement: str, tags: Mapping[str, Any] | None, time_ns: Any, fields: Mapping[str, Any]) -> int:
        """Add rows of one series; returns how many were kept (rows without any value are not).

        `time_ns`: an int or int64 array; `fields`: name -> scalar or array of that length
        (floats, ints, bools, str; NaN/inf and None are no value). Tags with an empty or None
        value are left out, as on the wire. BatchError/LineProtocolError for what cannot be stored.
        """
        t = np.asarray(time_ns)
        if t.ndim == 0:
            t = t.reshape(1)
        if t.dtype.kind not in "iu":
            raise BatchError(f"{measurement}: times must be integer ns, got dtype {t.dtype}")
        t = t.astype(np.int64, copy=False)
        n = t.shape[0]
        series_key(measurement, tags)  # checks the measurement and every tag (cached)
        clean_tags = {str(k): str(v) for k, v in (tags or {}).items() if v is not None and str(v) != ""}
        cols: dict[str, np.ndarray] = {}
        keep: np.ndarray | None = np.zeros(n, dtype=bool)
        for name, values in fields.items():
            if values is None:
                continue
            escape_key(name, "field key")
            col = _column(name, values, n)
            present = _present(col)
            if present is None:
                keep = None
            elif keep is not None:
                keep |= present
            cols[name] = col
        if not cols:
            return 0
        if keep is not None and not keep.all():
            t = t[keep]
            cols = {k: v[keep] for k, v in cols.items()}
        if t.shape[0]:
            self.parts.append(Block(measurement, clean_tags, t, cols))
            self.points += int(t.shape[0])
        return int(t.shape[0])

    def add_line_protocol(self, body: bytes, lines: int) -> None:
        """Line protocol (ns, validated) that goes to the store as it is."""
        if body:
            self.parts.append(body if body.endswith(b"\n") else body + b"\n")
            self.points += lines

    @classmethod
    def of_line_protocol(cls, body: bytes, lines: int) -> Batch:
        b = cls()
        b.add_line_protocol(body, lines)
        return b

    def extend(self, other: Batch) -> None:
        self.parts.extend(other.parts)
        self.points += other.points

    @property
    def typed(self) -> bool:
        """Whether every part is a typed block (nothing left to parse)."""
        return all(isinstance(p, Block) for p in self.parts)

    def nbytes(self) -> int:
        """About the memory the batch holds (for the writer's queue bound)."""
        n = 0
        for p in self.parts:
            if isinstance(p, bytes):
                n += len(p)
            else:
                n += 64 + p.time_ns.nbytes + sum(c.nbytes if c.dtype != object else 64 * c.shape[0]
                                                 for c in p.fields.values())
        return n

    def rows(self) -> Iterator[tuple[str, dict[str, str], dict[str, Any], int]]:
        """(measurement, tags, fields with a value, time_ns) of each typed row, in order (tests, tools)."""
        for p in self.parts:
            if isinstance(p, bytes):
                raise BatchError("rows(): the batch holds line protocol; parse it first")
            cols = {k: v.tolist() for k, v in p.fields.items()}
            for i, t in enumerate(p.time_ns.tolist()):
                fields = {}
                for k, vals in cols.items():
                    x = vals[i]
                    if x is None or (isinstance(x, float) and not math.isfinite(x)):
                        continue
                    fields[k] = x
                yield p.measurement, p.tags, fields, t

    def to_line_protocol(self) -> bytes:
        """The batch as ns line protocol, one line per row (what the InfluxDB stores send)."""
        out: list[bytes] = []
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
                continue
            key = series_key(p.measurement, p.tags)
            names = list(p.fields)
            cols = [p.fields[k].tolist() for k in names]
            lines = []
            for i, t in enumerate(p.time_ns.tolist()):
                line = encode_line(key, {k: c[i] for k, c in zip(names, cols)}, t)
                if line is not None:
                    lines.append(line)
            if lines:
                out.append(("\n".join(lines) + "\n").encode())
        return b"".join(out)


def encode(batch: Batch) -> bytes:
    """The batch as bytes for the disk (see the module's docstring for the layout)."""
    header: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    for p in batch.parts:
        if isinstance(p, bytes):
            header.append({"lp": len(p)})
            buffers.append(p)
            continue
        fields = []
        strings = {}
        buffers.append(np.ascontiguousarray(p.time_ns, dtype="<i8").tobytes())
        for name, col in p.fields.items():
            kind = _kind(col)
            fields.append([name, kind])
            if kind == "s":
                strings[name] = col.tolist()
            else:
                buffers.append(np.ascontiguousarray(col, dtype=_DTYPES[kind]).tobytes())
        header.append({"m": p.measurement, "tags": p.tags, "n": len(p), "fields": fields, "strings": strings})
    head = json.dumps({"points": batch.points, "parts": header}, ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(head)), head, *buffers])


def decode(data: bytes, lines: int | None = None) -> Batch:
    """A batch from `encode()`'s bytes; bytes without the magic are line protocol (an older spool file)."""
    if not data.startswith(MAGIC):
        return Batch.of_line_protocol(data, data.count(b"\n") if lines is None else lines)
    try:
        (size,) = struct.unpack_from("<Q", data, len(MAGIC))
        pos = len(MAGIC) + 8
        head = json.loads(data[pos : pos + size])
        pos += size
        batch = Batch()
        for part in head["parts"]:
            if "lp" in part:
                batch.parts.append(data[pos : pos + part["lp"]])
                pos += part["lp"]
                continue
            n = part["n"]
            t = np.frombuffer(data, dtype="<i8", count=n, offset=pos)
            pos += 8 * n
            cols = {}
            for name, kind in part["fields"]:
                if kind == "s":
                    col = np.empty(n, dtype=object)
                    col[:] = part["strings"][name]
                else:
                    dt = _DTYPES[kind]
                    col = np.frombuffer(data, dtype=dt, count=n, offset=pos)
                    pos += dt.itemsize * n
                cols[name] = col
            batch.parts.append(Block(part["m"], part["tags"], t, cols))
        batch.points = head["points"]
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        raise BatchError(f"not a readable batch: {exc}") from None
    if pos != len(data):
        raise BatchError(f"not a readable batch: {len(data) - pos} bytes left over")
    return batch

