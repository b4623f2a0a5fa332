"""Meter profiles: every shipped file loads; bad files give one-line errors naming file and key;
scaling semantics (ENTITY-SENSOR scale/precision, Raritan decimal digits); profile ranking; device config."""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import pytest

from puewatch import config as cfg
from puewatch.collector.snmp import profiles as pf
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.errors import ConfigError

REPO = Path(__file__).parent.parent.parent

GOOD = textwrap.dedent(
    """
    [profile]
    name = "acme-pdu"
    description = "ACME PDUs"

    [match]
    sysobjectid_prefixes = ["1.3.6.1.4.1.99999.5"]

    [[readings]]
    key = "inlet_power"
    location = "inlet"
    name = "inlet{index}_active_power"
    quantity = "active_power"
    unit = "W"
    column = "1.3.6.1.4.1.99999.5.1.1.3"
    scale = 10.0
    missing_values = [-1]

    [[readings]]
    key = "inlet_energy"
    location = "inlet"
    name = "inlet{i1}_active_energy"
    quantity = "active_energy"
    unit = "Wh"
    column = "1.3.6.1.4.1.99999.5.1.1.4"
    kind = "register"
    modulus_raw = 4294967296

    [[totals]]
    name = "total_active_power"
    quantity = "active_power"
    sum = ["inlet_power"]
    """
)


def write(tmp_path: Path, text: str, name: str = "acme.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_shipped_profile_loads_and_has_a_power_total():
    profiles = pf.load_profiles()
    shipped = sorted(p.stem for p in (REPO / "config" / "profiles").glob("*.toml"))
    assert sorted(profiles) == shipped
    assert {"ups-mib", "entity-sensor", "apc-rpdu2", "apc-ups", "raritan-pdu2", "raritan-px1", "eaton-epdu",
            "sentry4", "sentry3", "generic"} <= set(profiles)
    for p in profiles.values():
        assert p.source == f"puewatch.profiles/{p.name}.toml"
        if not p.profile.generic:
            # a power total wherever the device measures active power (never made up from VA)
            measures_w = any(s.quantity == "active_power" for s in p.readings)
            assert any(t.name == "total_active_power" for t in p.totals) == measures_w, p.name
            if not measures_w:  # what it reads instead: apparent power, or energy alone (iPoMan outlets)
                assert any(s.quantity in ("apparent_power", "active_energy") for s in p.readings), p.name
            for spec in p.readings:
                assert spec.doc, f"{p.name}.{spec.key}: say where the definition comes from"


def test_good_extra_profile_dir(tmp_path):
    write(tmp_path, GOOD)
    profiles = pf.load_profiles([tmp_path])
    p = profiles["acme-pdu"]
    spec = p.reading("inlet_energy")
    assert spec.kind == "register" and spec.modulus_raw == 2**32
    assert p.reading("inlet_power").name_for("2") == "inlet2_active_power"
    assert spec.name_for("3.1") == "inlet3_active_energy"
    # An index without a component the name uses has no name: never the placeholder left in as text.
    two = pf.ReadingSpec(key="phase_power", quantity="active_power", unit="W", column="1.3.6.1.4.1.99999.5.2",
                         name="pdu{i1}_phase{i2}_active_power")
    assert two.name_for("1.3") == "pdu1_phase3_active_power"
    with pytest.raises(pf.IndexTooShort, match=r"reading 'phase_power': row index 4 has 1 component\(s\), but its "
                                               r"name 'pdu\{i1\}_phase\{i2\}_active_power' uses \{i2\}"):
        two.name_for("4")
    assert p.source == str(tmp_path / "acme.toml")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('unit = "W"', 'unit = "kW"', "readings[0].unit: an active_power reading must be in 'W' (convert with `scale`), got 'kW'"),
        ('scale = 10.0', 'scale = 0', "readings[0].scale: must be greater than 0.0"),
        ('kind = "register"', 'kind = "counter"', "readings[1].kind: must be one of 'gauge', 'register'; got 'counter'"),
        ('column = "1.3.6.1.4.1.99999.5.1.1.3"', 'column = ".1.3.6.1.4.1.99999.5.1.1.3"', "readings[0].column: must be a numeric OID"),
        ('sum = ["inlet_power"]', 'sum = ["outlet_power"]', "totals[0].sum[0]: no reading with key 'outlet_power'"),
        ('sum = ["inlet_power"]', 'sum = ["inlet_energy"]', "totals[0].sum[0]: reading 'inlet_energy' measures active_energy"),
        ('name = "total_active_power"', 'name = "total_power"', "totals: every profile must define a total named 'total_active_power'"),
        ('missing_values = [-1]', 'missing_value = [-1]', "readings[0].missing_value: unknown key in [readings[0]]"),
        ('name = "inlet{index}_active_power"', 'name = "inlet_active_power"', "readings[0].name: a column reading's name needs {index}"),
        ('name = "inlet{index}_active_power"', 'name = "inlet{row}_active_power"', "readings[0].name: unknown placeholder {row}"),
        ('quantity = "active_power"\n', 'quantity = "power"\n', "readings[0].quantity: must be one of 'active_power'"),
        ('key = "inlet_energy"', 'key = "inlet_power"', "readings[1].key: duplicate key 'inlet_power'"),
        ('[match]', '[match]\nfallback = true', "match.requires_any: a fallback profile must name OID subtrees"),
        ('modulus_raw = 4294967296', 'modulus_raw = 4294967296\nvalid_if = { column = "1.3.6", values = [1], via = "1.3.6.1" }',
         "readings[1].valid_if.via: is not supported here"),
        ('modulus_raw = 4294967296', 'modulus_raw = 4294967296\nvalid_if = { column = "1.3.6", values = [1] }\n'
         'zero_valid_if = { column = "1.3.7", values = [0] }', "readings[1].zero_valid_if: set `valid_if` or"),
        ('modulus_raw = 4294967296', 'modulus_raw = 4294967296\nzero_valid_if = { column = "1.3.6", values = [0], '
         'via = "1.3.6.1" }', "readings[1].zero_valid_if.via: is not supported here"),
        ('scale = 10.0', 'scale = 10.0\nunit_column = "1.3.6.1.4.1.99999.5.1.1.9"',
         "readings[0].units: set both `unit_column` and `units`"),
        ('scale = 10.0', 'scale = 10.0\nunit_column = "1.3.6.1.4.1.99999.5.1.1.9"\nunits = { W = 2.0 }',
         "readings[0].units.W: is the reading's own unit: its factor must be 1, got 2.0"),
        ('scale = 10.0', 'scale = 10.0\nunit_column = "1.3.6.1.4.1.99999.5.1.1.9"\nunits = { kW = -1000.0 }',
         "readings[0].units.kW: must be a factor > 0"),
        ('scale = 10.0', 'scale = 10.0\nlabel_column = "1.3.6.1.4.1.99999.5.1.1.2"', "readings[0].label_match: set both"),
        ('scale = 10.0', 'scale = 10.0\nlabel_column = "1.3.6.1.4.1.99999.5.1.1.2"\nlabel_match = "(Power"',
         "readings[0].label_match: not a regular expression"),
        ('scale = 10.0', 'scale = 10.0\nsigned_factor_column = "1.3.6.x"', "readings[0].signed_factor_column: must be a numeric OID"),
        ('modulus_raw = 4294967296', 'modulus_raw = 4294967296\napparent_check = { voltage = "1.3.6.1.4.1.99999.5.1.1.5", '
         'current = "1.3.6.1.4.1.99999.5.1.1.6" }', "readings[1].apparent_check: applies to table columns of true power"),
        ('scale = 10.0', 'scale = 10.0\napparent_check = { voltage = "1.3.6.1.4.1.99999.5.1.1.5", current = "x" }',
         "readings[0].apparent_check.current: must be a numeric OID"),
        ('scale = 10.0', 'scale = 10.0\napparent_check = { voltage = "1.3.6.1.4.1.99999.5.1.1.5", '
         'current = "1.3.6.1.4.1.99999.5.1.1.6", min_power_factor = 1.5 }', "readings[0].apparent_check.min_power_factor"),
        ('name = "acme-pdu"', 'name = "acme-pdu"\nmax_power_w = 0', "profile.max_power_w"),
        # Found by the SNMP operator audit: both loaded. A gauge's energy was integrated as a rate (Wh read as W);
        # a W and a Wh reading of one name are one series.
        ('kind = "register"\nmodulus_raw = 4294967296', 'kind = "gauge"',
         'readings[1].kind: an active_energy reading counts up: kind = "register"'),
        ('name = "inlet{i1}_active_energy"', 'name = "inlet{index}_active_power"',
         "readings[1].name: reading name 'inlet{index}_active_power' is readings[0]'s too, which measures active_power"),
        # Found by an outside audit: a name naming an index component the table's rows cannot have kept the
        # placeholder as text, one name for several rows. Where the index's length is declared, refused at load.
        ('name = "inlet{i1}_active_energy"', 'name = "inlet{i1}_phase{i3}_active_energy"\nindex_parts = 2',
         "readings[1].name: {i3} names index component 3, but the row index has 2 (index_parts)"),
        ('modulus_raw = 4294967296', 'modulus_raw = 4294967296\nindex_parts = 1\nindex_filter = [{ position = -2, values = [1] }]',
         "readings[1].index_filter[0].position: -2 is beyond the row index's 1 components (index_parts)"),
        ('scale = 10.0', 'scale = 10.0\nindex_parts = 0', "readings[0].index_parts: must be at least 1"),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        pf.load_profile_file(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text
    assert "\n" not in text


def test_row_filter_by_range(tmp_path):
    """`where` keeps rows whose column lies in [min, max] (an outlet number of 0 is no outlet)."""
    flt = pf.RowFilter(column="1.3.6.1.4.1.99999.5.2", range=[1, 256])
    assert [flt.keeps(v) for v in (0, 1, 256, 257, None)] == [False, True, True, False, False]
    assert pf.RowFilter(column="1.3.6.1.4.1.99999.5.2", values=[6]).keeps(6)
    base = GOOD.replace("missing_values = [-1]", "missing_values = [-1]\nwhere = [{ column = \"1.3.6.1.4.1.99999.5.2\", %s }]")
    for fields, message in [
        ("range = [5, 1]", "readings[0].where[0].range: must be [min, max] with min <= max"),
        ("values = [1], range = [1, 2]", "readings[0].where[0].values: set exactly one of `values`"),
        ("values = []", "readings[0].where[0].values: set exactly one of `values`"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            pf.load_profile_file(write(tmp_path, base % fields))


MOVED = textwrap.dedent(
    """
    [profile]
    name = "acme-databus"

    [match]
    sysobjectid_prefixes = ["1.3.6.1.4.1.99998"]
    requires_any = ["1.3.6.1.4.1.99998.12.1.1.2.6.1.1.10"]

    [readings_from]
    profile = "schleifenbauer"
    subtree = "1.3.6.1.4.1.31034.12.1"
    moved_to = "1.3.6.1.4.1.99998.12.1"
    """
)


def test_readings_from_another_profile_with_oids_moved(tmp_path):
    """One MIB under two vendors' arcs is written once: every OID moves, everything else is the same."""
    write(tmp_path, MOVED)
    profiles = pf.load_profiles([tmp_path])
    base, moved = profiles["schleifenbauer"], profiles["acme-databus"]
    assert moved.source == str(tmp_path / "acme.toml") and moved.match.sysobjectid_prefixes == ["1.3.6.1.4.1.99998"]
    assert len(moved.readings) == len(base.readings) and moved.totals == base.totals
    for a, b in zip(base.readings, moved.readings):
        assert b.column == a.column.replace("1.3.6.1.4.1.31034.12.1", "1.3.6.1.4.1.99998.12.1", 1)
        assert (b.key, b.location, b.quantity, b.scale, b.kind, b.raw_range) == (a.key, a.location, a.quantity, a.scale,
                                                                                  a.kind, a.raw_range)
    assert profiles["conteg-databus"].reading("input_active_power").column == "1.3.6.1.4.1.28402.12.1.1.2.6.1.1.10"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('profile = "schleifenbauer"', 'profile = "nope"', "readings_from.profile: no profile named 'nope'"),
        ('profile = "schleifenbauer"', 'profile = "conteg-databus"',
         "readings_from.profile: 'conteg-databus' takes its own readings from 'schleifenbauer'"),
        ('subtree = "1.3.6.1.4.1.31034.12.1"', 'subtree = "1.3.6.1.4.1.31034.12.2"', "is not below 1.3.6.1.4.1.31034.12.2"),
        ('moved_to = "1.3.6.1.4.1.99998.12.1"', 'moved_to = "99998"', "readings_from.moved_to: must be a numeric OID"),
        ('[readings_from]', '[[totals]]\nname = "total_active_power"\nquantity = "active_power"\nsum = ["x"]\n\n[readings_from]',
         "readings: the readings and totals come from profile 'schleifenbauer'"),
    ],
)
def test_readings_from_errors_name_file_and_key(tmp_path, old, new, message):
    assert old in MOVED
    path = write(tmp_path, MOVED.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        pf.load_profiles([tmp_path])
    text = str(exc.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_profile_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        pf.load_profile_file(write(tmp_path, "[profile\nname = 1"))
    with pytest.raises(ConfigError, match="cannot read profile"):
        pf.load_profile_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="profile directory not found"):
        pf.load_profiles([tmp_path / "nope"])
    write(tmp_path, GOOD.replace('name = "acme-pdu"', 'name = "sentry4"'))
    with pytest.raises(ConfigError, match="'sentry4' is already defined in puewatch.profiles/sentry4.toml"):
        pf.load_profiles([tmp_path])


def test_entity_sensor_and_decimal_digit_scaling():
    # EntitySensorDataScale: units(9) = 1, milli(8) = 1e-3, kilo(10) = 1e3, yocto(1), yotta(17)
    assert pf.entity_scale_factor(9) == 1.0
    assert pf.entity_scale_factor(8) == pytest.approx(1e-3)
    assert pf.entity_scale_factor(10) == 1e3
    assert pf.entity_scale_factor(1) == pytest.approx(1e-24)
    assert pf.entity_scale_factor(17) == pytest.approx(1e24)
    with pytest.raises(ValueError):
        pf.entity_scale_factor(18)
    # precision: decimal places; negative values only describe accuracy (no change)
    assert 72000 / pf.entity_precision_divisor(3) == 72.0
    assert pf.entity_precision_divisor(0) == 1.0 and pf.entity_precision_divisor(-2) == 1.0
    with pytest.raises(ValueError):
        pf.entity_precision_divisor(10)
    # a milliwatt sensor with precision 4: 12345 -> 1.2345 mW -> 0.0012345 W
    assert math.isclose(12345 * pf.entity_scale_factor(8) / pf.entity_precision_divisor(4), 0.0012345)
    # Raritan: 7467 with 3 decimal digits = 7.467
    assert 7467 / pf.decimal_digits_divisor(3) == 7.467
    # RITTAL-CMC-III cmcIIIVarScale: -10 divides by 10, +100 multiplies by 100, 0 is no scale
    assert 26418 * pf.signed_factor(-10) == pytest.approx(2641.8) and 3 * pf.signed_factor(100) == 300.0
    with pytest.raises(ValueError):
        pf.signed_factor(0)


def test_sentinels():
    profiles = pf.load_profiles()
    apc = profiles["apc-rpdu2"].reading("device_active_power")
    assert pf.is_sentinel(apc, -1) and not pf.is_sentinel(apc, 0) and not pf.is_sentinel(apc, -2)
    # APC's UPS objects are Unsigned32 whose "not available" is -1: its bits, read unsigned, are 2^32 - 1.
    apc_ups = profiles["apc-ups"].reading("output_active_power")
    assert pf.is_sentinel(apc_ups, 4294967295.0) and pf.is_sentinel(apc_ups, float(2**64 - 1))
    assert not pf.is_sentinel(apc_ups, 4294967294.0) and not pf.is_sentinel(apc_ups, 2147483647.0)
    assert not pf.is_sentinel(profiles["vertiv-v5"].reading("pdu_active_power"), 4294967295.0)  # 9999 is its filler
    eaton = profiles["eaton-epdu"].reading("input_total_active_power")
    assert pf.is_sentinel(eaton, -5) and not pf.is_sentinel(eaton, 0)
    # PDU-MIB: inletActiveEnergy "has an invalid value if outletEnergySupport = 'No'", and such firmware
    # answers 0 (a capture drawing 580 W): no reading, so the inlet's power is integrated (MIB audit).
    px1 = profiles["raritan-px1"].reading("inlet_active_energy")
    assert pf.is_sentinel(px1, 0) and not pf.is_sentinel(px1, 1)
    # DELL-SNMP-UPS-MIB: physicalOutputPresentConsumption is the past hour's mean, 0 until the card has an
    # hour of data: a 0 is no reading (it counted the UPS output, E_IT, as 0 W for an hour; MIB audit).
    dell = profiles["dell-ups"].reading("output_active_power")
    assert pf.is_sentinel(dell, 0) and not pf.is_sentinel(dell, 250)
    # VERTIV-V5-MIB: Gauge32(0..9999000) Wh and (0..9999) W latch at their ceilings (RFC 2578): a latched
    # register read as a reading would count 0 Wh from then on, unseen (MIB audit).
    vertiv = profiles["vertiv-v5"]
    for key in ("pdu_active_energy", "phase_active_energy", "breaker_active_energy", "outlet_active_energy"):
        assert pf.is_sentinel(vertiv.reading(key), 9999000) and not pf.is_sentinel(vertiv.reading(key), 9998999)
    for key in ("pdu_active_power", "phase_active_power", "breaker_active_power", "outlet_active_power"):
        assert pf.is_sentinel(vertiv.reading(key), 9999) and not pf.is_sentinel(vertiv.reading(key), 9998)


def test_a_fallback_total_is_never_a_part_of_what_it_stands_for():
    """WTI-POWER-MIB: the system total, else nothing; branch A alone read 0 W where branch B drew 256 W (MIB audit)."""
    wti = next(t for t in pf.load_profiles()["wti-power"].totals if t.name == "total_active_power")
    assert list(wti.sum) == ["system_active_power"] and not wti.fallback


def test_candidates_rank_longest_prefix_then_fallbacks():
    profiles = pf.load_profiles()
    names = lambda soid: [p.name for p in pf.candidates(profiles, soid)]  # noqa: E731
    assert names("1.3.6.1.4.1.318.1.3.4.8")[:2] == ["apc-rpdu2", "apc-ups"]
    assert names("1.3.6.1.4.1.318.1.3.27")[:2] == ["apc-ups", "apc-rpdu2"]
    assert names("1.3.6.1.4.1.13742.6")[0] == "raritan-pdu2"
    assert names("1.3.6.1.4.1.13742.60")[0] != "raritan-pdu2"  # whole arcs only
    # fallbacks (standard MIBs, and vendors whose agents send no usable sysObjectID), by priority
    fallbacks = ["ups-mib", "cpi-pdu", "entity-sensor", "hpe-cpqpower"]
    assert names("1.3.6.1.4.1.8072.3.2.10") == fallbacks
    assert names("1.3.6.1.4.1.5491.308") == fallbacks


def test_device_config_validation():
    build = lambda **kw: cfg.build(SnmpDevice, {"name": "pdu-a1", "host": "127.0.0.1", **kw}, "collector.toml")  # noqa: E731
    d = build()
    assert d.version == "2c" and d.port == 161 and d.interval_s == 10.0
    v3 = build(version="3", user="mon", auth_key="12345678", priv_key="abcdefgh", auth_proto="SHA-256")
    assert v3.security_level == "authPriv"
    assert build(version="3", user="mon", auth_key="12345678").security_level == "authNoPriv"
    cases = [
        ({"version": "3"}, "collector.toml: user: is required for SNMPv3"),
        ({"version": "3", "user": "u", "auth_key": "short"}, "auth_key: must be at least 8 characters"),
        ({"version": "3", "user": "u", "priv_key": "abcdefgh"}, "priv_key: privacy needs authentication too"),
        ({"auth_proto": "SHA1"}, "auth_proto: must be one of 'none', 'MD5', 'SHA'"),
        ({"timeout_s": 5.0, "retries": 2, "interval_s": 10.0}, "timeout_s: timeout_s x (retries + 1) = 15 s is longer than interval_s"),
        ({"profile": "generic"}, "oids: the generic profile needs at least one OID"),
        ({"oids": [{"name": "p", "oid": "1.3.6.1.4.1.1.0", "quantity": "active_power"}]}, "oids: are only read with profile = \"generic\""),
        ({"profile": "generic", "oids": [{"name": "p", "oid": "1.3.6.1.4.1.1.0", "quantity": "load", "total": True}]},
         "oids[0].total: only active_power and active_energy"),
        ({"name": "bad name"}, "name: must be letters, digits and '_.:-'"),
        ({"community": 5}, "community: must be a string, got <hidden>"),
    ]
    for kw, message in cases:
        with pytest.raises(ConfigError) as exc:
            build(**kw)
        assert message in str(exc.value), str(exc.value)


def test_generic_profile_from_device_oids():
    d = cfg.build(
        SnmpDevice,
        {"name": "meter", "host": "127.0.0.1", "profile": "generic", "oids": [
            {"name": "a_power", "oid": "1.3.6.1.4.1.1.1.0", "quantity": "active_power", "total": True},
            {"name": "b_power", "oid": "1.3.6.1.4.1.1.2.0", "quantity": "active_power", "total": True, "scale": 10.0},
            {"name": "energy", "oid": "1.3.6.1.4.1.1.3.0", "quantity": "active_energy", "kind": "register",
             "modulus_raw": 4294967296.0, "total": True},
        ]},
        "t",
    )
    p = pf.generic_profile(pf.load_profiles()["generic"], d.oids)
    assert [s.key for s in p.readings] == ["a_power", "b_power", "energy"]
    assert [(t.name, t.sum) for t in p.totals] == [
        ("total_active_power", ["a_power", "b_power"]), ("total_active_energy", ["energy"])
    ]
    assert p.reading("b_power").scale == 10.0 and p.reading("energy").unit == "Wh"


def test_every_profile_reading_says_where_it_sits(tmp_path):
    """A profile file must give each reading its location at the device; an unknown one is refused by name."""
    for name, profile in pf.load_profiles().items():
        if not profile.profile.generic:
            assert all(s.location in pf.LOCATIONS for s in profile.readings), name
    text = pf.builtin_profile_files()[0][1]
    (tmp_path / "noloc.toml").write_text(
        re.sub(r'\nlocation = "[a-z_]+"', "", text).replace('name = "apc-rpdu2"', 'name = "noloc"'))
    with pytest.raises(ConfigError, match=r"readings\[0\]\.location: say where"):
        pf.load_profile_file(tmp_path / "noloc.toml")
    (tmp_path / "bad.toml").write_text(text.replace('location = "total"', 'location = "rack"', 1))
    with pytest.raises(ConfigError, match=r"location: must be one of"):
        pf.load_profile_file(tmp_path / "bad.toml")


def test_sys_object_id_sent_as_text_is_the_oid_it_names():
    """Some agents send sysObjectID as an OCTET STRING, often with a leading dot."""
    assert pf.sys_object_id("1.3.6.1.4.1.232.165.11") == "1.3.6.1.4.1.232.165.11"
    assert pf.sys_object_id(".1.3.6.1.4.1.232.165.11 ") == "1.3.6.1.4.1.232.165.11"
    assert pf.sys_object_id("HP PDU") is None and pf.sys_object_id(None) is None and pf.sys_object_id(42) is None
    assert [p.name for p in pf.candidates(pf.load_profiles(), pf.sys_object_id(".1.3.6.1.4.1.232.165.11"))][0] == "hpe-cpqpower"


def test_every_shipped_location_resolves_and_totals_are_preferred():
    """A meter's `location` + `quantity` (site file) resolves to the profile's own total where it has one at
    that location, else to a total of every reading there; a location without such a reading is refused."""
    from puewatch.core.site import Meter

    profiles = pf.load_profiles()
    for name, profile in profiles.items():
        for quantity in ("active_energy", "active_power"):
            own = {t.location: t.name for t in profile.totals if t.quantity == quantity}
            for location in {s.location for s in profile.readings if s.quantity == quantity} | set(own):
                total, why = pf.location_total(profile, location, quantity)
                assert why is None, (name, location, why)
                if location in own:
                    assert total.name == own[location], (name, location)
                else:
                    keys = [s.key for s in profile.readings if s.location == location and s.quantity == quantity]
                    assert total.sum == keys and total.name == f"sum_{location}_{quantity}", (name, location)
    # Resolving twice (collector config check, then the poller's start; or a report) gives the same.
    device = type("Device", (), {"name": "pdu", "profile": "raritan-pdu2"})()
    meters = {"m": Meter(role="it", point="it_input", device="pdu", location="outlet", quantity="active_energy")}
    first, problems = pf.resolve_meter_locations(meters, [device], profiles)
    again, _ = pf.resolve_meter_locations(meters, [device], first)
    assert not problems and meters["m"].reading == "sum_outlet_active_energy"
    assert first["raritan-pdu2"].totals == again["raritan-pdu2"].totals
    assert first["raritan-pdu2"].totals[-1].sum == ["outlet_active_energy"]
    assert profiles["raritan-pdu2"].totals != first["raritan-pdu2"].totals  # the shipped profile is untouched


def test_a_meter_at_outlet_never_sums_outlet_groups_which_may_overlap():
    """RNX-UPDU-MIB meters outlets (upduMeterType 6) and outlet groups (7) in one table. The groups sat at
    `outlet` too, so a meter reading `location = "outlet"` summed every group's outlets twice (MIB audit).
    Groups sit at `outlet_group`, which no location selector sums (groups may overlap one another)."""
    from puewatch.core.site import OVERLAPPING_LOCATIONS, Meter

    rnx = pf.load_profiles()["rnx-updu"]
    total, why = pf.location_total(rnx, "outlet", "active_energy")
    assert why is None and total.sum == ["outlet_active_energy"]
    assert {s.location for s in rnx.readings if s.key.startswith("outlet_group")} == {"outlet_group"}
    assert "outlet_group" in OVERLAPPING_LOCATIONS
    meter = Meter(role="it", point="it_input", device="pdu", location="outlet_group", quantity="active_energy")
    assert [k for k, _ in meter.check()] == ["location"]
    assert "may overlap" in meter.check()[0][1] and "`reading`" in meter.check()[0][1]


def test_a_reading_the_named_profile_has_not_is_a_config_error():
    """Found by the SNMP operator audit: `reading = "device_power"` on a device whose profile has no such reading
    passed --check-config, and the meter got no data, unsaid. Where the site file names the profile (or a generic
    one, with the device's `oids`), the reading is checked against it: a row of a column by its name template."""
    from puewatch.collector.snmp.device import GenericOid
    from puewatch.core.site import Meter

    profiles = pf.load_profiles()
    pdu = type("Device", (), {"name": "pdu", "profile": "raritan-pdu2", "oids": []})()
    chosen = type("Device", (), {"name": "auto", "profile": "", "oids": []})()  # profile chosen at run time
    generic = type("Device", (), {"name": "gen", "profile": "generic",
                                  "oids": [GenericOid(name="feed_power", oid="1.3.6.1.4.1.99999.1.0",
                                                      quantity="active_power", total=True)]})()
    meters = {
        "a": Meter(role="it", point="it_input", device="pdu", reading="pdu1_outlet3_active_power"),
        "b": Meter(role="it", point="it_input", device="pdu", reading="total_active_energy"),
        "c": Meter(role="it", point="it_input", device="pdu", reading="device_power"),
        "d": Meter(role="it", point="it_input", device="auto", reading="anything"),
        "e": Meter(role="other", device="gen", reading="feed_power"),
        "f": Meter(role="other", device="gen", reading="feed_powr"),
    }
    _, problems = pf.resolve_meter_locations(meters, [pdu, chosen, generic], profiles)
    assert [k for k, _ in problems] == ["meters.c.reading", "meters.f.reading"], problems
    assert problems[0][1].startswith("device 'pdu' (profile 'raritan-pdu2') has no reading named 'device_power'; "
                                     "its readings: pdu{i1}_inlet{i2}_active_power, ")
    assert "feed_power, total_active_power" in problems[1][1]


def test_a_generic_device_s_energy_oid_is_a_register(tmp_path):
    """As a profile's (SNMP operator audit): a generic `oids` entry of active_energy left as a gauge was integrated
    as a rate, its Wh read as W. The site file's check names it."""
    from puewatch.collector import config as ccfg

    conf = tmp_path / "c.toml"
    conf.write_text(
        '[collector]\nsite = "x"\n[[snmp.devices]]\nname = "d"\nhost = "127.0.0.1"\nprofile = "generic"\n'
        'oids = [{ name = "e", oid = "1.3.6.1.4.1.99999.1.0", quantity = "active_energy", total = true }]\n'
        '[meters.in]\nrole = "facility_input"\ndevice = "d"\n[meters.it]\nrole = "it"\npoint = "it_input"\ndevice = "d"\n')
    with pytest.raises(ConfigError, match=r'snmp\.devices\[0\]\.oids\[0\]\.kind: an active_energy reading counts up'):
        ccfg.load(conf)


def test_no_shipped_profile_takes_an_all_ones_filler_or_an_impossible_power_for_a_reading():
    """Found by the SNMP audit: 156 power and energy readings of 37 shipped profiles took at least one of 65535,
    2^31 - 1 and 2^32 - 1 for a reading, and three took a Counter64's 2^64 - 1 (filler_scan). One rule now, in
    validate.check_value, for every profile: each is refused, as is a power of more than 5 MW (more than one
    device of the profile's kind carries) that a scale makes of a possible raw value."""
    from puewatch.collector.snmp.validate import check_value

    for name, profile in pf.load_profiles().items():
        for spec in profile.readings:
            if spec.unit not in ("W", "VA", "Wh", "VAh"):
                continue
            for raw in (65535.0, 2.0**31 - 1, 2.0**32 - 1, float(2**64 - 1)):
                value, refused = check_value(spec, raw, spec.scale, profile.profile.max_power_w)
                assert math.isnan(value) and refused is not None, (name, spec.key, raw, value)
            if spec.unit in ("W", "VA"):
                value, refused = check_value(spec, 6e6, 1.0, profile.profile.max_power_w)
                assert (refused is None) is (profile.profile.max_power_w >= 6e6), (name, spec.key, value, refused)
