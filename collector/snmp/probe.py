"""`puewatch snmp probe HOST[:PORT]`: what a device is, which profile fits, and its power and energy now.

The tool an operator runs before adding a meter to the collector's config. It
uses exactly the poller's code path (`Meter.poll`), so what it shows is what
the collector will record.

`--json` prints the contract::

    {"device": {"sysDescr": str|null, "sysObjectID": str|null},
     "profile": str,
     "readings": [{"name": str, "oid": str, "raw": int|float|null, "value": float|null, "unit": "W"|"Wh",
                   "location": str (where it sits at the device: total, inlet, phase, branch, outlet,
                                    module, ups_output, ups_input, ups_bypass; "" for a configured OID),
                   "refused": str (only where the answered value was refused, or no value answered)}, ...]}

Only power (W) and energy (Wh) readings are listed; `value` is null when the
device has no value (absent object, 'not supported' sentinel, invalid). A value
the collector would refuse (`collector.snmp.validate`: outside the MIB object's
range, a 'not available' filler, a negative power or energy, not finite) has
`value` null and `refused` saying why, e.g. "negative power -26 W (raw -26)";
an object the device has no value for says what it answered instead, e.g. "the
device answered noSuchInstance for 1.3.6.1.4.1.1718.3.1.6.0". Both are listed
and counted under "refused" in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass, field

from puewatch import config as cfg
from puewatch.collector.snmp import profiles as pf
from puewatch.collector.snmp.client import SnmpError
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.poller import Meter, Reading
from puewatch.errors import UserError


class ProbeFailed(UserError):
    """The device did not answer usefully (timeout, credentials, no profile): exit 1."""

    exit_code = 1


@dataclass
class ProbeResult:
    sys_descr: str | None
    sys_object_id: str | None
    profile: str
    readings: list[Reading]  # every reading (W, Wh, VA, % ...), rows then totals
    rows: int = 0  # objects found on the device (scalars and table rows), totals not counted
    # Each register reading's wrap as the collector and the reports take it where the site file names
    # this profile (profiles.register_modulus): (Wh, None), (None, None) for none, (None, why) where the
    # device decides it; a site file that names no profile takes every drop as a reset.
    wraps: dict[str, tuple[float | None, str | None]] = field(default_factory=dict)
    named: bool = False  # the profile was named (--profile), not chosen by the sysObjectID

    def power_and_energy(self) -> list[Reading]:
        return [r for r in self.readings if r.unit in ("W", "Wh")]

    def nothing_read(self) -> str | None:
        """Why the device gave no power or energy value with this profile, or None when it gave one."""
        if any(math.isfinite(r.value) for r in self.power_and_energy()):
            return None
        if not self.rows:
            return f"the device has no objects of profile {self.profile!r} (no table rows, no scalars)"
        return f"every power and energy reading of profile {self.profile!r} is unavailable on this device"

    def refused(self) -> list[Reading]:
        return [r for r in self.readings if r.refused is not None]

    def to_json(self) -> dict:
        """`readings`: the power and energy readings (W, Wh); `other_readings`: every other one (VA, VAh,
        A, V, %, ...), in the same form, so that a refused value of any unit shows."""

        def item(r: Reading) -> dict:
            out = {"name": r.name, "oid": r.oid, "raw": r.raw, "value": r.value if math.isfinite(r.value) else None,
                   "unit": r.unit, "location": r.location, "kind": r.kind, "status": r.status}
            if r.refused is not None:
                out["refused"] = r.refused.text
            if r.name in self.wraps:
                out["wraps_at"], why = self.wraps[r.name]
                if why:
                    out["wraps_unknown"] = why
            return out

        main = self.power_and_energy()
        return {
            "device": {"sysDescr": self.sys_descr, "sysObjectID": self.sys_object_id},
            "profile": self.profile,
            "readings": [item(r) for r in main],
            "other_readings": [item(r) for r in self.readings if r not in main],
        }


async def probe(device: SnmpDevice, profiles: dict[str, pf.Profile] | None = None) -> ProbeResult:
    """Connect, choose the profile, poll once. Raises SnmpError (device) or ConfigError (profile name)."""
    profiles = profiles if profiles is not None else pf.load_profiles()
    meter = Meter(device, profiles)
    try:
        readings = await meter.poll()
    finally:
        meter.close()
    assert meter.profile is not None
    wraps = {r.name: pf.register_modulus(meter.profile, r.name) for r in readings if r.kind == "register"}
    return ProbeResult(meter.sys_descr, meter.sys_object_id, meter.profile.name, readings, len(meter.rows or []), wraps,
                       bool(device.profile))


def parse_host(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT -> (host, port); port 161 by default."""
    host, port = text, 161
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UserError(f"bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UserError(f"bad address {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = _port(p, text)
    if not host:
        raise UserError(f"bad address {text!r}: no host")
    return host, port


def _port(p: str, text: str) -> int:
    if not p.isdigit() or not 1 <= int(p) <= 65535:
        raise UserError(f"bad port in {text!r}: must be 1..65535")
    return int(p)


def device_from_args(args: argparse.Namespace) -> SnmpDevice:
    host, port = parse_host(args.target)
    data: dict = {"name": "probe", "host": host, "port": port, "timeout_s": args.timeout, "retries": args.retries}
    data["interval_s"] = max(10.0, args.timeout * (args.retries + 1))
    if args.user:
        if args.community is not None:
            raise UserError("give either --community (SNMPv2c) or --user (SNMPv3), not both")
        data.update(version="3", user=args.user, auth_key=args.auth_key or "", priv_key=args.priv_key or "")
        data["auth_proto"] = args.auth_proto
        data["priv_proto"] = args.priv_proto
        if args.context:
            data["context"] = args.context
    else:
        for flag, value in (("--auth-key", args.auth_key), ("--priv-key", args.priv_key)):
            if value:
                raise UserError(f"{flag} needs --user (SNMPv3)")
        data["community"] = args.community if args.community is not None else "public"
    if args.profile:
        data["profile"] = args.profile
    try:
        return cfg.build(SnmpDevice, data, "arguments")
    except UserError as exc:
        # "arguments: auth_key: must be ..." -> name the flag the user typed.
        text = str(exc).removeprefix("arguments: ")
        key, _, rest = text.partition(": ")
        flag = {"timeout_s": "timeout", "host": "HOST", "port": "PORT"}.get(key, key.replace("_", "-"))
        raise UserError(f"{flag if flag.isupper() else '--' + flag}: {rest}") from None


def main(args: argparse.Namespace) -> int:
    profiles = pf.load_profiles(args.profile_dir or ())
    if args.profile and args.profile not in profiles:
        raise UserError(f"--profile: unknown profile {args.profile!r}; profiles: {', '.join(sorted(profiles))}")
    if args.profile and profiles[args.profile].profile.generic:
        # Checked before the device is built: its own check would ask for `oids`, a config key, not a flag.
        raise UserError(
            f"--profile {args.profile}: this profile reads the objects listed under `oids` in a [[snmp.devices]] "
            "entry, which probe cannot take; probe with a named profile, or without --profile"
        )
    device = device_from_args(args)
    try:
        result = asyncio.run(probe(device, profiles))
    except SnmpError as exc:
        raise ProbeFailed(str(exc)) from None
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(result)
    why = result.nothing_read()
    if why is not None:
        hint = "" if not device.profile else " (without --profile, probe chooses one from sysObjectID)"
        raise ProbeFailed(f"{device.address}: {why}: is it the right profile?{hint}")
    return 0


def _fmt(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "unavailable"
    return f"{x:,.3f}".rstrip("0").rstrip(".") + f" {unit}"


def _print_table(result: ProbeResult) -> None:
    """The readings as a table that fits the terminal: names and values never cut; OIDs in their own
    table below when one table would be too wide (an OID is 20-40 characters)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]sysDescr[/bold]     {result.sys_descr or '(none)'}", highlight=False)
    console.print(f"[bold]sysObjectID[/bold]  {result.sys_object_id or '(none)'}", highlight=False)
    console.print(f"[bold]profile[/bold]      {result.profile}", highlight=False)
    rows = []
    for r in result.power_and_energy():
        value = f"refused: {r.refused.text}" if r.refused is not None else _fmt(r.value, r.unit)
        rows.append((r.name, r.location, r.kind, value, "" if r.raw is None else str(r.raw), r.oid or "(sum)"))
    if not rows:
        console.print("no power or energy readings", highlight=False)
        return
    heads = ("reading", "at", "kind", "value", "raw", "oid")
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    # box.SIMPLE: 3 characters between columns, 1 at each edge
    one_table = sum(max(w, len(h)) for w, h in zip(widths, heads)) + 3 * (len(heads) - 1) + 2
    columns = heads if one_table <= console.width else heads[:-1]
    table = Table(box=box.SIMPLE, header_style="bold", pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right" if name in ("value", "raw") else "left",
                         no_wrap=name != "value", overflow="fold" if name in ("value", "oid") else "ellipsis")
    for row in rows:
        table.add_row(*row[: len(columns)])
    console.print(table)
    if len(columns) < len(heads):
        oids = Table(box=box.SIMPLE, header_style="bold", pad_edge=False)
        oids.add_column("reading", no_wrap=True)
        oids.add_column("oid", overflow="fold")
        for row in rows:
            oids.add_row(row[0], row[-1])
        console.print(oids)
    estimated = [r.name for r in result.power_and_energy() if r.status == "estimated" and math.isfinite(r.value)]
    if estimated:
        console.print(f"[bold]estimated[/bold]    {', '.join(estimated)}: derived by the device (e.g. from a configured "
                      "voltage), not measured", highlight=False)
    # The wrap the collector and the reports take (not the value this poll's rows would give): a profile's
    # rule, where the site file names the profile; a drop with none is a reset.
    registers = [r for r in result.power_and_energy() if r.name in result.wraps]
    for modulus in sorted({m for m, _ in result.wraps.values() if m is not None}):
        names = [r.name for r in registers if result.wraps[r.name][0] == modulus]
        console.print(f"[bold]wraps[/bold]        at {modulus:,.0f} Wh: {', '.join(names)}", highlight=False)
    unknown = [r.name for r in registers if result.wraps[r.name][1]]
    if unknown:
        console.print(f"[bold]no wrap[/bold]      {', '.join(unknown)}: the device decides where it wraps, so a drop is "
                      "taken as a reset", highlight=False)
    if not result.named and any(m is not None for m, _ in result.wraps.values()):
        console.print(f"[bold]note[/bold]         the wraps hold where the site file names profile = "
                      f"\"{result.profile}\" for the device; with none named, every drop is taken as a reset",
                      highlight=False)
    refused = result.refused()
    if refused:
        console.print(f"[bold]refused[/bold]      {len(refused)} value(s), recorded as missing by the collector:", highlight=False)
        for r in refused:
            console.print(f"  {r.name}: {r.refused.reason}: {r.refused.text}", highlight=False)
