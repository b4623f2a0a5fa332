"""collector.toml: the sample validates, errors name file and key, the reference is generated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from puewatch import config as cfg
from puewatch.collector import config as ccfg
from puewatch.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """
[collector]
site = "s"
[ingest]
token_file = "/dev/null"
[meters.in]
role = "facility_input"
measurement = "m"
field = "p"
unit = "kW"
[meters.it]
role = "it"
point = "pdu_output"
measurement = "m"
field = "e"
unit = "kWh"
register = true
"""


def load(text: str, tmp_path: Path) -> ccfg.CollectorConfig:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return ccfg.load(p)


def test_the_sample_config_is_valid():
    conf = ccfg.load(REPO / "config" / "collector.toml")
    assert conf.site_model().category == 1
    assert conf.store.kind == "influx1"
    assert {d.name for d in conf.snmp.devices} == {"incomer-a", "ups-a", "crac-a"}
    assert conf.meters["chw-heat"].register


def test_defaults_give_the_embedded_store_and_five_windows(tmp_path):
    conf = load(BASE, tmp_path)
    assert conf.store.kind == "embedded"
    assert conf.collector.windows == ["1m", "15m", "1h", "24h", "30d"]
    assert conf.site_model().category == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[collector]\nsite = \"s\"", "[collector]\nsite = \"s\"\ninterval_s = 7"), "collector.interval_s: must divide one minute"),
        (("[collector]\nsite = \"s\"", "[collector]\nsite = \"s\"\nwindows = [\"15 min\"]"), "collector.windows: '15 min' is not a duration"),
        (("[collector]\nsite = \"s\"", "[collector]\nsite = \"s\"\nwindows = [\"90m\"]"), None),
        (("[collector]\nsite = \"s\"", "[collector]\nsite = \"s\"\nwindows = [\"150s\", \"3h\"]"), None),
        (("[collector]\nsite = \"s\"", "[collector]\nsite = \"s\"\nwindows = [\"90s\", \"3h30s\"]"), "collector.windows"),
        (('point = "pdu_output"', 'point = "rack"'), "meters.it.point"),
        (('point = "pdu_output"\n', ""), "meters.it.point: an IT meter needs its measurement point"),
        (('role = "facility_input"', 'role = "other"'), 'no meter has role "facility_input"'),
        (('unit = "kW"', 'unit = "kWh"'), "meters.in.register: a field in kWh is cumulative"),
        (("[collector]", "[collector]\nsiet = 1"), "collector.siet: unknown key in [collector]"),
        (("", "[store.influx1]\nurl = \"ftp://x\"\ndatabase = \"d\"\n"), "store.influx1.url: must be an http:// or https:// URL"),
        (("", "[store.influx1]\nurl = \"http://x\"\ndatabase = \"d\"\n[store.influx2]\nurl = \"http://x\"\nbucket = \"b\"\n"),
         "store.influx1: give one store, not influx2 and influx1"),
        (("", "[metrics]\nlisten = \"9464\"\n"), "metrics.listen: expected HOST:PORT"),
        (("", "[store.embedded]\ncompact_after_days = 0\n"), "store.embedded.compact_after_days"),
        (("", "[[snmp.devices]]\nname = \"a\"\nhost = \"h\"\n[[snmp.devices]]\nname = \"a\"\nhost = \"h2\"\n"),
         "snmp.devices: device name 'a' is used twice"),
        (("", "[snmp]\nprofile_dirs = [\"/nonexistent/profiles\"]\n"),
         "snmp.profile_dirs: '/nonexistent/profiles' is not a directory"),
        # An ingest meter no feeder token could name (found by the config audit).
        (("[meters.in]", '[meters."in,b"]'), "meters.in,b: an ingest meter's name is written in its feeder's token"),
        (("[meters.in]", '[meters."in b"]'), "meters.in b: an ingest meter's name"),
        # An SNMP meter's name with a newline stopped the collector at its first derived write; a meter named like
        # an agent's GPU stream gave duplicate /metrics series (found by the metrics audit).
        (("", '[[snmp.devices]]\nname = "u"\nhost = "h"\n[meters."ups\\nx"]\nrole = "other"\ndevice = "u"\n'),
         "a meter's name is a tag of its series: it cannot be empty, hold a control"),
        (("[meters.in]", '[meters."gpu:n1:g0"]'), "a meter's name cannot begin with 'gpu:'"),
        # SNMPv3 credentials on a v2c device were ignored, silently (found by the config audit).
        (("", "[[snmp.devices]]\nname = \"a\"\nhost = \"h\"\nuser = \"ops\"\nauth_key = \"secret-pass\"\n"),
         'user: is an SNMPv3 setting, and this device has version = "2c"'),
    ],
)
def test_errors_name_the_key_and_what_is_wrong(tmp_path, change, message):
    old, new = change
    text = BASE.replace(old, new, 1) if old else new + BASE
    if message is None:
        load(text, tmp_path)
        return
    with pytest.raises(ConfigError) as exc:
        load(text, tmp_path)
    assert str(exc.value).startswith(str(tmp_path / "c.toml") + ": ")
    assert message in str(exc.value)


def test_reference_document_is_generated_from_the_models():
    text = cfg.reference_markdown(ccfg.CollectorConfig, "Collector configuration reference (collector.toml)")
    for section in ("[collector]", "[meters.<name>]", "[zones.<name>]", "[ingest]", "[snmp.devices]", "[store.influx1]"):
        assert f"## `{section}`" in text
    out = subprocess.run([sys.executable, "-m", "puewatch.collector.config"], capture_output=True, text=True, check=True)
    assert out.stdout == text + "\n"
    # The committed reference is the generated one (regenerate: python -m puewatch.collector.config > collector/CONFIG.md).
    assert (REPO / "collector" / "CONFIG.md").read_text() == out.stdout


def test_a_meter_s_coefficient_is_1_or_minus_1(tmp_path):
    """It adds a meter or subtracts one; 0 dropped a meter from its role unseen and 2 doubled it (found by the
    damaged-CSV audit: the docs said 1 or -1, any finite number was taken)."""
    from puewatch.core.site import Meter

    for v in (1, -1.0):
        assert cfg.build(Meter, {"role": "cooling", "measurement": "m", "field": "f", "unit": "kW", "coefficient": v},
                         "t").coefficient == float(v)
    for v in (0, 2, 0.5):
        with pytest.raises(ConfigError, match=r"t: coefficient: must be one of 1.0, -1.0; got"):
            cfg.build(Meter, {"role": "cooling", "measurement": "m", "field": "f", "unit": "kW", "coefficient": v}, "t")


PROFILE = """
[profile]
name = "acme-ups"
vendor = "ACME"
"""  # a key a profile's [profile] table has not


@pytest.mark.parametrize(
    ("device", "meter", "profile", "message"),
    [
        # A broken profile file in profile_dirs: said at load (it passed --check-config, then the collector stopped).
        ('profile = "apc-ups"', "", PROFILE, "acme.toml: profile.vendor: unknown key in [profile]"),
        ('profile = "apc-ups"', "", "[profile\n", "acme.toml"),
        ('profile = "apc-ups"', "", b"\xff\xfe".decode("latin-1"), "acme.toml"),
        # A device naming a profile there is not.
        ('profile = "apc-upz"', "", None, "snmp.devices: device 'ups-a': profile 'apc-upz' is not in the built-in profiles"),
        # A meter's reading its device's profile has not (no meter has a location: it was checked only then).
        ('profile = "apc-ups"', 'reading = "no_such_reading"', None,
         "meters.ups.reading: device 'ups-a' (profile 'apc-ups') has no reading named 'no_such_reading'"),
    ],
)
def test_snmp_profiles_are_checked_at_load(tmp_path, device, meter, profile, message):
    """Found by the config audit: `--check-config` loaded the SNMP profiles only where a meter had a `location`, so a
    broken profile file or an unknown profile passed it and the collector then refused to start (exit 2, which
    systemd does not restart), and a meter's unknown `reading` got no data, silently."""
    dirs = ""
    if profile is not None:
        (tmp_path / "profiles").mkdir()
        (tmp_path / "profiles" / "acme.toml").write_bytes(profile.encode("latin-1"))
        dirs = f'[snmp]\nprofile_dirs = ["{tmp_path / "profiles"}"]\n'
    text = (BASE + f'[meters.ups]\nrole = "cooling"\ndevice = "ups-a"\n{meter}\n' + dirs
            + f'[[snmp.devices]]\nname = "ups-a"\nhost = "127.0.0.1"\n{device}\n')
    with pytest.raises(ConfigError) as exc:
        load(text, tmp_path)
    assert message in str(exc.value), str(exc.value)
    assert str(exc.value).startswith(str(tmp_path / "c.toml") + ": ")
    # The same file with nothing broken loads.
    load(BASE + '[meters.ups]\nrole = "cooling"\ndevice = "ups-a"\n'
         + '[[snmp.devices]]\nname = "ups-a"\nhost = "127.0.0.1"\nprofile = "apc-ups"\n', tmp_path)


def test_a_feeder_scope_s_error_names_its_file_and_line_once(tmp_path):
    """Found by the config audit: --check-config printed `tokens: tokens:3: the feeder scope names ...`."""
    from puewatch.collector import tokenfile

    tokens = tmp_path / "tokens"
    tokens.write_text("# feeders\n\ntelegraf tok-tttttttttttttttttttt feeder:nope\n")
    tokens.chmod(0o600)
    conf = load(BASE.replace('token_file = "/dev/null"', f'token_file = "{tokens}"'), tmp_path)
    errors, _ = tokenfile.check(conf, str(tmp_path / "c.toml"))
    assert errors == [f"{tokens}:3: the feeder scope names meter 'nope', which is not in [meters] (ingest meters: in, it)"]


def test_settle_s_is_at_least_the_slowest_meter_devices_wait(tmp_path):
    """Found by the config audit: a settle_s shorter than a meter device's poll interval plus its timeouts
    passed, and every cell between its polls was written before its next reading came (counted missing);
    the defaults themselves did it (settle 10 s, a device's 10 s + 2 x 2 s). Unset, settle_s is now that wait
    (at least 10 s); set shorter, the config is refused naming the device."""
    snmp = ('[[snmp.devices]]\nname = "pdu"\nhost = "127.0.0.1"\ninterval_s = 30.0\ntimeout_s = 3.0\nretries = 2\n'
            '[[snmp.devices]]\nname = "spare"\nhost = "127.0.0.1"\ninterval_s = 60.0\n'
            '[meters.pdu]\nrole = "it"\npoint = "pdu_output"\ndevice = "pdu"\n')
    text = BASE.replace('[meters.it]\nrole = "it"', '[meters.it2]\nrole = "it"') + snmp
    assert load(text, tmp_path).settle_s() == 39.0  # 30 + 3 x 3; the unused device's 60 s does not count
    assert load(BASE, tmp_path).settle_s() == ccfg.DEFAULT_SETTLE_S  # no SNMP meter
    with pytest.raises(ConfigError) as exc:
        load(text.replace('site = "s"', 'site = "s"\nsettle_s = 20.0'), tmp_path)
    assert ("collector.settle_s: 20 s is shorter than device 'pdu''s interval_s + timeout_s x (retries + 1) = 39 s"
            in str(exc.value))
    assert load(text.replace('site = "s"', 'site = "s"\nsettle_s = 39.0'), tmp_path).settle_s() == 39.0


def test_a_broken_profile_is_named_by_check_config_as_by_load(tmp_path):
    """Found by the input audit: under --check-config (which notes every problem), a profile file's error was noted
    as the collector config's (`c.toml: readings[2].kind: ...`) and the profile's own line was empty
    (`snmp.profile_dirs: .../acme.toml: : `)."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "acme.toml").write_text(
        '[profile]\nname = "acme-ups"\n[[readings]]\nkey = "p"\nquantity = "active_power"\nunit = "W"\n'
        'location = "total"\noid = "1.3.6.1.4.1.9.1.0"\nkind = "counter"\n')
    path = tmp_path / "c.toml"
    path.write_text(BASE + '[meters.ups]\nrole = "cooling"\ndevice = "ups-a"\n'
                    + f'[snmp]\nprofile_dirs = ["{tmp_path / "profiles"}"]\n'
                    + '[[snmp.devices]]\nname = "ups-a"\nhost = "127.0.0.1"\nprofile = "apc-ups"\n')
    _, errors = cfg.check_file(path, ccfg.CollectorConfig)
    assert errors == [f"{path}: snmp.profile_dirs: {tmp_path / 'profiles' / 'acme.toml'}: readings[0].kind: must be "
                      "one of 'gauge', 'register'; got 'counter'"], errors
