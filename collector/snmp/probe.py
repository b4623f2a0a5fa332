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
                   "refused": str (only where the answered value was refused)}, ...]}

Only power (W) and energy (Wh) readings are listed; `value` is null when the
device has no value (absent object, 'not supported' sentinel, invalid). A value
the collector would refuse (`collector.snmp.validate`: outside the MIB object's
range, a 'not available' filler, a negative power or energy, not finite) has
`value` null and `refused` saying why, e.g. "negative power -26 W (raw -26)".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass

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

    def power_and_energy(self) -> list[Reading]:
        return [r for r in self.readings if r.unit in ("W", "Wh")]

    def refused(self) -> list[Reading]:
        return [r for r in self.readings if r.refused is not None]

    def to_json(self) -> dict:
        readings = []
        for r in self.power_and_energy():
            item = {"name": r.name, "oid": r.oid, "raw": r.raw, "value": r.value if math.isfinite(r.value) else None, "unit": r.unit,
                    "location": r.location}
            if r.refused is not None:
                item["refused"] = r.refused.text
            readings.append(item)
        return {
            "device": {"sysDescr": self.sys_descr, "sysObjectID": self.sys_object_id},
            "profile": self.profile,
            "readings": readings,
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
    return ProbeResult(meter.sys_descr, meter.sys_object_id, meter.profile.name, readings)


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
    device = device_from_args(args)
    profiles = pf.load_profiles(args.profile_dir or ())
    if device.profile and device.profile not in profiles:
        raise UserError(f"--profile: unknown profile {device.profile!r}; profiles: {', '.join(sorted(profiles))}")
    if device.profile and profiles[device.profile].profile.generic:
        raise UserError("--profile generic needs OIDs from a device config; probe with a named profile or none")
    try:
        result = asyncio.run(probe(device, profiles))
    except SnmpError as exc:
        raise ProbeFailed(str(exc)) from None
    if args.json:
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(result)
    return 0


def _fmt(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "unavailable"
    return f"{x:,.3f}".rstrip("0").rstrip(".") + f" {unit}"


def _print_table(result: ProbeResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]sysDescr[/bold]     {result.sys_descr or '(none)'}", highlight=False)
    console.print(f"[bold]sysObjectID[/bold]  {result.sys_object_id or '(none)'}", highlight=False)
    console.print(f"[bold]profile[/bold]      {result.profile}", highlight=False)
    table = Table(show_header=True, header_style="bold")
    table.add_column("reading")
    table.add_column("at")
    table.add_column("kind")
    table.add_column("value", justify="right")
    table.add_column("raw", justify="right")
    table.add_column("oid", overflow="fold")
    for r in result.power_and_energy():
        kind = r.kind if r.modulus is None else f"{r.kind} (wraps at {r.modulus:,.0f} {r.unit})"
        value = f"refused: {r.refused.text}" if r.refused is not None else _fmt(r.value, r.unit)
        table.add_row(r.name, r.location, kind, value, "" if r.raw is None else str(r.raw), r.oid or "(sum)")
    console.print(table)
    refused = result.refused()
    if refused:
        console.print(f"[bold]refused[/bold]      {len(refused)} value(s), recorded as missing by the collector:", highlight=False)
        for r in refused:
            console.print(f"  {r.name}: {r.refused.reason}: {r.refused.text}", highlight=False)
