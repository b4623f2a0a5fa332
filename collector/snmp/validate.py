"""Which raw SNMP values become readings: the one check every polled value passes.

A value an agent answers is refused (the reading is missing, NaN, never a number) when

- ``not_a_number``: it is text that is not a decimal number ("abc", "", "2,000"), or a value
  of an SNMP type that is no meter's number (an IpAddress, TimeTicks, an OBJECT IDENTIFIER,
  Opaque: `client.Typed`), whatever its text: the object answered something, but not a value,
  which is not the same as an absent row (noSuchInstance), so a total over the rows cannot be
  known either;
- ``non_finite``: it is not a finite number (text "nan", "inf"), or scaling made it so;
- ``unavailable``: it is the vendor's "not available" filler that the profile declares
  (`missing_values`, `missing_below`: APC rPDU2 -1 = unsupported, Eaton negative W, ...; a
  negative filler also as its bits read unsigned, 4294967295 for -1: `profiles.is_sentinel`), or
  a status column says the value is not available (`valid_if`, applied by the poller);
- ``negative``: it is a negative power, apparent power or energy (W, VA, Wh, VAh): a meter
  that reports -26 W is broken, and summing it into a total hides other lines' load;
- ``out_of_range``: it lies outside the SYNTAX range of the MIB object (`raw_range`), e.g.
  4294967295 from an INTEGER (0..2147483647) object or 65535 from INTEGER (-1..25000); or its
  bits are all ones in a 16, 31, 32, 63 or 64-bit field, which agents answer for "not available"
  whether or not their MIB says so (65535, 2147483647, 4294967295, 2^64 - 1: `profiles.ALL_ONES`;
  a true reading of exactly that raw value is lost, one sample); or it is a power (W, VA) above
  what one device of the profile's kind can carry (`[profile] max_power_w`, 5 MW unless the
  profile says more: Liebert's text "99999999999" kW is no measurement). Unlike a declared
  filler, such a value leaves a total over its rows missing (the row's load is unknown);
- ``not_measured``: a true power that is a sliver of its own row's volts x amps where the line is
  loaded (`check_apparent`, a profile's `apparent_check`: 1 W at 230 V x 7.2 A), or a 0 that a
  status column says is not measured (`zero_valid_if`, applied by the poller); more than its row's
  volts x amps allow is ``out_of_range``;
- ``absent``: the agent answered no value at all (noSuchObject, noSuchInstance, endOfMibView):
  the device has not got the object, or not now. Like a filler, a scalar's is left out of
  the totals; a table row's makes them missing (`poller.Meter._note_absent`).

The order is that of the list: a declared filler is named as such, and a negative
power is called that before its range is looked at. Profiles carry the data (ranges,
fillers); this module is the only place that applies it, for the poller and for
`puewatch snmp probe` alike (the probe polls through the poller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from puewatch.collector.snmp.profiles import ALL_ONES, APPARENT_SLACK, DEVICE_MAX_W, ApparentCheck, ReadingSpec, is_sentinel
from puewatch.core.numbers import decimal

#: Why a value was refused (the `reason` label of puewatch_snmp_values_refused_total).
REASONS = ("not_a_number", "non_finite", "unavailable", "negative", "out_of_range", "not_measured", "absent")

#: Reasons that say the device has no value (rather than a value that cannot be true).
NO_VALUE_REASONS = frozenset({"unavailable", "absent"})

#: Units of readings that cannot be negative.
NON_NEGATIVE_UNITS = frozenset({"W", "VA", "Wh", "VAh"})

_QUANTITY_WORDS = {"W": "power", "VA": "apparent power", "Wh": "energy", "VAh": "apparent energy"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused value: the reason (one of REASONS) and a line for people."""

    reason: str
    text: str


def _fmt(x: float) -> str:
    # Whole numbers in full, others as short as they round-trip: "4294967295.5", never "4.29497e+09",
    # which would read as inside a range it lies outside.
    return f"{x:.0f}" if x == int(x) and abs(x) < 1e16 else repr(x)


def number_of(raw: int | str | None) -> tuple[float | None, Refusal | None]:
    """The number an agent answered: (float, None); (None, None) for no value (absent: noSuchObject,
    noSuchInstance, endOfMibView); (None, why) for text that is not a number."""
    if raw is None:
        return None, None
    kind = getattr(raw, "snmp_type", None)
    if kind is not None:
        return None, Refusal("not_a_number", f"an SNMP {kind}{f' ({raw[:40]})' if raw else ''}, not a number")
    if isinstance(raw, int):
        return float(raw), None
    # Text an agent may answer for a number (a DisplayString data point, a string-typed column), in
    # the one grammar (core.numbers.decimal), surrounding spaces allowed; a non-finite word is read
    # as itself and refused as such by check_value.
    x = decimal(raw.strip())
    if x is not None:
        return x, None
    return None, Refusal("not_a_number", f"not a number: {raw[:40]!r}")


def absent(oid: str, answer: str | None) -> Refusal:
    """Why an object has no value: what the agent answered for it (`client.no_value`), where known."""
    return Refusal("absent", f"the device answered {answer or 'no such object or instance'} for {oid}")


def check_value(spec: ReadingSpec, raw: float, factor: float, max_power_w: float = DEVICE_MAX_W
                ) -> tuple[float, Refusal | None]:
    """(value in the reading's unit, None), or (NaN, why) when `raw` must not become a reading.

    `raw`: the number the agent answered; `factor`: what turns it into the reading's unit
    (the spec's scale times the row's scale). A NaN factor (a per-row scale that could not
    be read) yields NaN without a refusal: the value is unknown, not wrong. `max_power_w`: the
    profile's bound on one device's power (`[profile] max_power_w`).
    """
    if not math.isfinite(raw):
        return math.nan, Refusal("non_finite", f"not a finite number: {raw!r}")
    if is_sentinel(spec, raw):
        return math.nan, Refusal("unavailable", f"raw {_fmt(raw)} means 'not available' ({_filler_source(spec)})")
    if not math.isfinite(factor):
        return math.nan, None
    value = raw * factor + 0.0  # -0.0 ("-0", "-1e-400") is 0: never a negative zero stored or shown
    if not math.isfinite(value):
        return math.nan, Refusal("non_finite", f"raw {_fmt(raw)} x {factor:g} is not a finite number")
    if value < 0 and spec.unit in NON_NEGATIVE_UNITS:
        return math.nan, Refusal("negative", f"negative {_QUANTITY_WORDS[spec.unit]} {_fmt(value)} {spec.unit} (raw {_fmt(raw)})")
    if spec.raw_range and not spec.raw_range[0] <= raw <= spec.raw_range[1]:
        lo, hi = spec.raw_range
        return math.nan, Refusal("out_of_range", f"raw {_fmt(raw)} is outside the object's range {_fmt(lo)}..{_fmt(hi)}")
    if raw in ALL_ONES:
        # Not a declared filler (which, like an absent row, leaves a total the rows that have a value): a row of
        # a loaded device, whose total is then unknown, not the other rows' sum.
        return math.nan, Refusal("out_of_range", f"raw {_fmt(raw)} is all ones in {ALL_ONES[raw]} bits, what agents answer "
                                                 "for 'not available', not a measurement")
    if spec.unit in ("W", "VA") and value > max_power_w:
        return math.nan, Refusal("out_of_range", f"{_QUANTITY_WORDS[spec.unit]} {value:.6g} {spec.unit} (raw {_fmt(raw)}) "
                                                 f"is more than one such device can carry (profile: max_power_w = "
                                                 f"{max_power_w:g})")
    return value, None


def check_apparent(check: ApparentCheck, watts: float, volts_raw: float | None, amps_raw: float | None
                   ) -> Refusal | None:
    """Why a true power `watts` cannot be what its row's voltage and current (raw, as answered with it) allow, or
    None. Each of volts and amps may be one raw step off (their resolution), the current by a whole ampere (agents
    that answer whole amps in a 0.1 A object), and the three are sampled apart: a power above APPARENT_SLACK x the
    most volts x amps they allow is no measurement (`out_of_range`); where the line carries at least
    `min_apparent_va`, a power below `min_power_factor` x the least they allow is not measured (`not_measured`:
    an agent's 0 W or 1 W on a loaded line). A voltage or current that is missing, not a number, negative, a
    filler (all ones) or 0 (not measured, or no output) says nothing, and leaves the power as it is; so does a
    current of 0 for the upper bound."""
    if volts_raw is None or amps_raw is None or not (math.isfinite(volts_raw) and math.isfinite(amps_raw)):
        return None
    if volts_raw <= 0 or amps_raw < 0 or volts_raw in ALL_ONES or amps_raw in ALL_ONES:
        return None
    v, a = volts_raw * check.voltage_scale, amps_raw * check.current_scale
    most = (v + check.voltage_scale) * (a + max(check.current_scale, 1.0))
    least = max(v - check.voltage_scale, 0.0) * max(a - check.current_scale, 0.0)
    line = f"{_fmt(watts)} W on a line of {v:g} V x {a:g} A ({v * a:.6g} VA)"
    if amps_raw > 0 and watts > APPARENT_SLACK * most:
        return Refusal("out_of_range", f"{line}: more than volts x amps allow, not a measurement (profile: apparent_check)")
    if v * a >= check.min_apparent_va and watts < check.min_power_factor * least:
        return Refusal("not_measured", f"{line}: a power factor below {check.min_power_factor:g}, not measured "
                                       "(profile: apparent_check)")
    return None


def _filler_source(spec: ReadingSpec) -> str:
    if spec.missing_values:
        return "profile: missing_values = [" + ", ".join(str(v) for v in spec.missing_values) + "]"
    return f"profile: missing_below = {spec.missing_below:g}"
