"""The one registry of field types: what ingest checks every line against, so that a 204 means what
InfluxDB's 204 means (a line the store would refuse for its type is refused at ingest instead).

A field's type is InfluxDB's: float, integer, unsigned, string or boolean. It is fixed, in order:
1. by puewatch's schema for the series puewatch defines (`puewatch.core.schema.FIELD_TYPES`:
   `gpu_power` fields are numbers, never whichever type a client wrote first);
2. by what the store already holds (`learn()`, at start: the embedded store's `field_types` table, or
   InfluxDB 1.x's `SHOW FIELD KEYS`; the v2 write API cannot be asked: there, and when the store is
   unreachable at start, a stored field's type is known from its first write here), and
   by the lines acknowledged before a crash and still in the spool, not yet in the store
   (`collector.main.ingest_field_types`: any store kind);
3. otherwise by the first line that writes the field, in this body or an earlier request.

InfluxDB keeps field types per shard; the collector keeps one type per measurement and field for
the whole store (stricter: a deliberate difference, docs/lineprotocol.md). The registry is bounded
(`MAX_FIELDS`): past it the oldest learnt types are forgotten, and the store stays the last word.

`unsigned`: whether the configured store takes unsigned integers (`1u`); InfluxDB 1.x does not.
"""

from __future__ import annotations

from collections import OrderedDict

from puewatch.core.schema import ANY_FIELD, FIELD_TYPES, NUMBER

__all__ = ["FieldTypes", "KINDS", "kind_of"]

KINDS = ("float", "integer", "unsigned", "string", "boolean")
_NUMBERS = frozenset(("float", "integer", "unsigned"))

MAX_FIELDS = 1_000_000


def kind_of(value) -> str:
    """The InfluxDB type of a parsed field value (the parser gives unsigned as `Unsigned`, an int subclass)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, float):
        return "float"
    return "unsigned" if type(value).__name__ == "Unsigned" else "integer"


class FieldTypes:
    """measurement, field -> type; `fault()` says why a line's field cannot be stored, and learns."""

    def __init__(self, fixed: dict[str, dict[str, str]] | None = None, unsigned: bool = True) -> None:
        self.fixed = FIELD_TYPES if fixed is None else fixed
        self.unsigned = unsigned
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def forget(self) -> None:
        """Forget what was learnt (a fresh store); the schema's types stay."""
        self._known.clear()

    def known(self, measurement: str, field: str) -> str | None:
        """The type a line's field must have (None: any; NUMBER: float, integer or unsigned)."""
        kind = self._known.get((measurement, field))
        if kind is not None:
            return kind
        fixed = self.fixed.get(measurement)
        if fixed is not None:
            return fixed.get(field) or fixed.get(ANY_FIELD)
        return None

    def learn(self, measurement: str, field: str, kind: str) -> None:
        """Record a field's type (what the store holds, or the first write)."""
        if len(self._known) >= MAX_FIELDS:
            self._known.popitem(last=False)
        self._known[(measurement, field)] = kind

    def fault(self, measurement: str, fields: dict[str, str], pending: dict[tuple[str, str], str]) -> str | None:
        """Why a line with these field types (name -> kind) cannot be stored, or None.

        `pending`: the types taken by earlier lines of the same body (committed with `commit()` once
        the body is accepted), so a conflict inside one body is caught as InfluxDB catches it.
        """
        adds: dict[tuple[str, str], str] = {}
        for name, kind in fields.items():
            if kind == "unsigned" and not self.unsigned:
                return f"unsigned integer field {name!r}: the configured store (InfluxDB 1.x) has no unsigned integers"
            key = (measurement, name)
            want = pending.get(key) or self.known(measurement, name)
            if want is None:
                adds[key] = kind
            elif want == NUMBER:
                if kind not in _NUMBERS:
                    return f"field type conflict: input field {name!r} on measurement {measurement!r} is type {kind}, " \
                           f"puewatch's schema says number"
                adds[key] = kind
            elif want != kind:
                return f"field type conflict: input field {name!r} on measurement {measurement!r} is type {kind}, " \
                       f"already exists as type {want}"
        pending.update(adds)
        return None

    def commit(self, pending: dict[tuple[str, str], str]) -> None:
        for (measurement, name), kind in pending.items():
            if self._known.get((measurement, name)) != kind:
                self.learn(measurement, name, kind)
