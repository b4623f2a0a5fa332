"""`puewatch snmp probe` end to end, in a subprocess, against snmpsim (recordings) and snmpd (SNMPv3)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from snmp_support import V3_USERS

PUEWATCH = str(Path(sys.executable).parent / "puewatch")


def run(*args: str, timeout: float = 60, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run([PUEWATCH, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, COLUMNS=str(columns)))


def test_probe_json_contract(snmpsim_recordings):
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "--community", "sentry4-master-link", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["device", "profile", "readings", "other_readings"]
    assert out["device"] == {"sysDescr": "puewatch test agent: Sentry4 master and link unit", "sysObjectID": "1.3.6.1.4.1.1718.4"}
    assert out["profile"] == "sentry4"
    keys = ["name", "oid", "raw", "value", "unit", "location", "kind", "status"]
    for reading in out["readings"]:
        # A register adds the wrap the collector takes where the site file names the profile.
        assert list(reading) == keys + (["wraps_at"] if reading["kind"] == "register" else [])
        assert reading["unit"] in ("W", "Wh")
    assert out["other_readings"], "sentry4 cords also answer VA, A and V"
    for reading in out["other_readings"]:
        assert list(reading)[:len(keys)] == keys
        assert reading["unit"] not in ("W", "Wh")
    by_name = {x["name"]: x for x in out["readings"]}
    # st4InputCordEnergy of unit 2 (the link unit) cord 1: 3001 tenths of kWh
    assert by_name["unit2_cord1_active_energy"] == {
        "name": "unit2_cord1_active_energy", "oid": "1.3.6.1.4.1.1718.4.1.3.3.1.10.2.1", "raw": 3001, "value": 300100.0, "unit": "Wh",
        "location": "inlet",  # a cord: the profile says where each reading sits
        "kind": "register", "status": "measured", "wraps_at": None,  # st4InputCordEnergy: Unsigned32 in 0.1 kWh
    }
    assert by_name["total_active_power"]["location"] == "total"
    assert by_name["total_active_power"]["value"] == 1234 + 987 + 612  # every cord of every unit
    assert by_name["total_active_energy"]["value"] == (5521 + 4410 + 3001) * 100.0


def test_probe_json_unavailable_is_null(snmpsim_recordings):
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "apc-rpdu2-unsupported", "--json")
    assert r.returncode == 0, r.stderr
    by_name = {x["name"]: x for x in json.loads(r.stdout)["readings"]}
    assert by_name["pdu1_active_power"]["raw"] == -1 and by_name["pdu1_active_power"]["value"] is None
    assert by_name["total_active_power"]["value"] == 415.0  # the legacy (estimated) object, as fallback
    # Found by the probe audit: shown and recorded as measured, though the profile says the PDU derives it.
    assert by_name["legacy_active_power"]["status"] == by_name["total_active_power"]["status"] == "estimated"
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "apc-rpdu2-unsupported")
    assert "estimated    legacy_active_power, total_active_power: derived by the device" in r.stdout, r.stdout
    assert by_name["total_active_energy"]["value"] is None


def test_probe_table_output(snmpsim_recordings):
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "ups-mib-three-line")
    assert r.returncode == 0, r.stderr
    assert "ups-mib" in r.stdout and "1.3.6.1.4.1.5491.77" in r.stdout
    assert "4,320 W" in r.stdout and "output_line3_active_power" in r.stdout  # 1510 + 1422 + 1388 W


def test_probe_states_the_wrap_the_collector_takes_not_this_polls(snmpsim_recordings):
    """Found by the probe audit: the probe said a Raritan PDU's total energy "wraps at 4,294,967,296 Wh" (what its
    one inlet row gives this poll), where the collector and the reports take a drop of it as a reset (the
    profile cannot say where a device with several inlets wraps: profiles.register_modulus)."""
    from puewatch.collector.snmp.profiles import load_profiles, register_modulus

    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "raritan-pdu2-one-inlet")
    assert r.returncode == 0, r.stderr
    assert "wraps at" not in r.stdout
    assert ("no wrap      pdu1_inlet1_active_energy, total_active_energy: the device decides where it wraps, so a "
            "drop is taken as a reset") in r.stdout
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "raritan-pdu2-one-inlet", "--json")
    by_name = {x["name"]: x for x in json.loads(r.stdout)["readings"]}
    modulus, why = register_modulus(load_profiles()["raritan-pdu2"], "total_active_energy")
    assert modulus is None and why
    assert by_name["total_active_energy"]["wraps_at"] is None and by_name["total_active_energy"]["wraps_unknown"] == why


def test_probe_snmpv3_and_named_profile(snmpd):
    ap, ak, pp, pk, _ = V3_USERS["sha256aes"]
    snmpd.set_objects({})
    r = run("snmp", "probe", f"127.0.0.1:{snmpd.port}", "--user", "sha256aes", "--auth-proto", ap, "--auth-key", ak,
            "--priv-proto", pp, "--priv-key", pk, "--profile", "ups-mib", "--json")
    # snmpd has no UPS-MIB: what was read is printed, and the probe fails saying so
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["profile"] == "ups-mib" and out["device"]["sysObjectID"] == "1.3.6.1.4.1.8072.3.2.10"
    # snmpd has no UPS-MIB: the total is there, and unavailable (so the probe exits 1, saying so)
    by_name = {r["name"]: r for r in out["readings"]}
    assert by_name["total_active_power"] == {"name": "total_active_power", "oid": "", "raw": None, "value": None, "unit": "W",
                                          "location": "ups_output", "kind": "gauge", "status": "measured"}
    assert sorted(by_name) == ["rated_power", "total_active_power"]  # the W rating (absent too); VA is not listed
    assert by_name["rated_power"]["value"] is None
    assert r.stderr.count("\n") == 1 and "every power and energy reading of profile 'ups-mib' is unavailable" in r.stderr, r.stderr


@pytest.mark.parametrize("community", ["sentry4-master-link", "raritan-pdu2-one-inlet", "apc-rpdu2-unsupported"])
def test_probe_table_fits_80_columns(snmpsim_recordings, community):
    """Every reading name and OID whole, every line within 80 columns (the OIDs go to a table of their own)."""
    target = f"127.0.0.1:{snmpsim_recordings.port}"
    readings = json.loads(run("snmp", "probe", target, "-c", community, "--json").stdout)["readings"]
    r = run("snmp", "probe", target, "-c", community, columns=80)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, r.stdout
    words = {w for line in lines for w in line.split()}
    for x in readings:
        assert x["name"] in words, (x["name"], r.stdout)
        assert (x["oid"] or "(sum)") in words, (x["oid"], r.stdout)


def test_probe_named_profile_without_its_objects_exit_1(snmpsim_recordings):
    """A UPS-MIB agent probed as entity-sensor: nothing to read, and the probe says so."""
    r = run("snmp", "probe", f"127.0.0.1:{snmpsim_recordings.port}", "-c", "ups-mib-three-line", "--profile", "entity-sensor")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1, r.stderr
    assert "the device has no objects of profile 'entity-sensor'" in r.stderr and "right profile?" in r.stderr


def test_probe_generic_profile_names_what_probe_cannot_take():
    r = run("snmp", "probe", "127.0.0.1", "--profile", "generic")
    assert r.returncode == 2, r.stderr
    assert "--oids" not in r.stderr and "listed under `oids` in a [[snmp.devices]] entry" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_probe_timeout_takes_what_it_says():
    """SNMPv3 to a silent port: "no response within 2 s (2 tries)" sends two datagrams and gives up 2 x 2 s after the
    first, not after a third probe on top (it was 7.4 s). Timed from the first datagram the silent port receives, so
    starting Python on a loaded machine does not count (a wall-clock bound from the spawn failed CI at 6.09 s)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(0.2)
    arrivals: list[float] = []
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            try:
                silent.recv(65536)
            except TimeoutError:
                continue
            arrivals.append(time.monotonic())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        r = run("snmp", "probe", f"127.0.0.1:{silent.getsockname()[1]}", "--user", "shaaes", "--auth-key", "auth-pass-1",
                "--priv-key", "priv-pass-1", "--timeout", "2", "--retries", "1")
        ended = time.monotonic()
    finally:
        done.set()
        listener.join()
        silent.close()
    assert r.returncode == 1 and "no response within 2 s (2 tries): device down or unreachable?" in r.stderr, r.stderr
    assert len(arrivals) == 2, arrivals  # the engine-ID discovery, sent twice: no third try
    assert 1.5 < arrivals[1] - arrivals[0] < 2.5, arrivals  # the retry waits the timeout
    assert 2 * 2 - 0.5 < ended - arrivals[0] < 2 * 2 + 1.5, (ended - arrivals[0])  # gives up after the second timeout


def test_probe_wrong_auth_key_one_line_exit_1(snmpd):
    r = run("snmp", "probe", f"127.0.0.1:{snmpd.port}", "--user", "shaaes", "--auth-key", "not-the-key", "--priv-key", "priv-pass-1",
            "--timeout", "1", "--retries", "0")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "authentication failed (wrong auth key" in r.stderr


def test_probe_no_matching_profile_exit_1(snmpd):
    r = run("snmp", "probe", f"127.0.0.1:{snmpd.port}", "--timeout", "1")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "no meter profile matches sysObjectID" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["127.0.0.1:99999"], "bad port in '127.0.0.1:99999'"),
        ([":161"], "no host"),
        (["127.0.0.1", "--user", "u", "--auth-key", "short"], "--auth-key: must be at least 8 characters"),
        (["127.0.0.1", "--priv-key", "secret-priv"], "--priv-key needs --user"),
        (["127.0.0.1", "--user", "u", "--community", "c"], "either --community (SNMPv2c) or --user (SNMPv3)"),
        (["127.0.0.1", "--profile", "nope"], "--profile: unknown profile 'nope'"),
        (["127.0.0.1", "--timeout", "0"], "--timeout: must be at least 0.05"),
        (["127.0.0.1", "--auth-proto", "SHA-1"], "invalid choice: 'SHA-1'"),
    ],
)
def test_probe_bad_arguments_one_line_exit_2(args, message):
    r = run("snmp", "probe", *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l and not l.startswith("usage:") and not l.startswith(" ")]
    assert len(lines) == 1, r.stderr
    assert message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
