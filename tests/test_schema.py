"""The schema of stored series: the names, tags and fields the collector writes and the reports read.

The literal names here are an independent check of the contract (dashboards, InfluxQL
queries and auditors' scripts depend on them): a change must be deliberate.
"""

from __future__ import annotations

import numpy as np
import pytest

from puewatch.collector.stores.embedded import EmbeddedStore
from puewatch.core import schema
from puewatch.core.site import Meter, SiteModel
from puewatch.report.sources import read_meter


def test_every_series_has_its_documented_name_and_tags():
    m = Meter(role="it", point="ups_output", device="ups0", zone="hall-a")
    assert schema.snmp_reading("fra1", "pdu0", "total_active_power", "W") == (
        "snmp_reading", {"site": "fra1", "device": "pdu0", "reading": "total_active_power", "unit": "W"})
    assert schema.meter_energy("fra1", "ups", m, integrated=False) == (
        "meter_energy", {"site": "fra1", "meter": "ups", "role": "it", "zone": "hall-a", "method": "register"})
    assert schema.meter_energy("fra1", "ups", m, integrated=True).tags["method"] == "integrated"
    assert schema.gpu_energy("fra1", "gpu-a-1", "hall-a") == ("gpu_energy", {"site": "fra1", "node": "gpu-a-1", "zone": "hall-a"})
    assert schema.site_energy("fra1", 2) == ("site_energy", {"site": "fra1", "category": "2"})
    assert schema.zone_energy("fra1", "hall-a") == ("zone_energy", {"site": "fra1", "zone": "hall-a"})
    assert schema.pue("fra1", "1m", 1) == ("pue", {"site": "fra1", "window": "1m", "category": "1"})
    assert schema.pue("fra1", "1m") == ("pue", {"site": "fra1", "window": "1m"})  # any category
    assert schema.ppue("fra1", "hall-a", "15m") == ("ppue", {"site": "fra1", "zone": "hall-a", "window": "15m"})
    assert (schema.SNMP_VALUE, schema.SNMP_RAW) == ("value", "raw")
    assert schema.ZONE_FIELDS == ("boundary_wh", "it_wh", "gpu_wh")
    assert [schema.site_energy_field(g) for g in ("facility_input", "it", "water")] == ["facility_input_wh", "it_wh", "water_l"]
    assert [schema.meter_energy_field(r) for r in ("it", "water")] == ["energy_wh", "volume_l"]
    assert schema.coverage_field("pue") == "pue_coverage"


def test_meter_sources_name_the_series_a_meter_is_read_from():
    default = schema.meter_sources("fra1", Meter(role="it", device="pdu0"))
    assert [(s.measurement, s.tags["reading"], s.tags["unit"], s.field, s.register) for s in default] == [
        ("snmp_reading", "total_active_energy", "Wh", "value", True),
        ("snmp_reading", "total_active_power", "W", "value", False)]
    (own,) = schema.meter_sources("fra1", Meter(role="it", device="pdu0", reading="inlet1_active_energy"))
    assert [(s.tags["unit"], s.register) for s in (own, *own.alternatives)] == [("Wh", True), ("W", False)]
    (ingest,) = schema.meter_sources("fra1", Meter(role="it", measurement="modbus", tags={"meter": "m1"},
                                                   field="energy_kwh", unit="kWh", register=True))
    assert (ingest.measurement, dict(ingest.tags), ingest.field, ingest.register, ingest.factor) == (
        "modbus", {"meter": "m1"}, "energy_kwh", True, 1000.0)
    assert ingest.matches({"meter": "m1", "bus": "3"}) and not ingest.matches({"meter": "m2"})


@pytest.mark.parametrize("meter", [
    Meter(role="it", device="pdu0"),
    Meter(role="it", device="pdu0", reading="inlet1_active_power"),
    Meter(role="it", measurement="modbus", tags={"meter": "m1"}, field="power_kw", unit="kW"),
])
def test_what_is_stored_under_a_meter_source_is_what_the_report_reads(tmp_path, meter):
    """Write through the schema, read through the report's `read_meter`: the same readings, in W/Wh."""
    site = SiteModel("fra1", {"it": meter})
    store = EmbeddedStore(tmp_path / "s.db")
    t = np.arange(1, 6, dtype=np.int64) * 10**9
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    source = schema.meter_sources("fra1", meter)[-1]
    if source.alternatives:
        source = source.alternatives[0]
    store.write_columns(source.measurement, dict(source.tags), source.field, t, v)
    got = read_meter(store, site, "it", 0, 10**10)
    values = got.energy_wh if source.register else got.power_w
    assert got.t_ns.tolist() == t.tolist() and values.tolist() == (v * source.factor).tolist()


@pytest.mark.parametrize("measurement", ["snmp_reading", "pue", "gpu_power"])
def test_an_ingest_meter_cannot_read_the_collector_s_or_the_agents_series(measurement):
    # A feeder writing snmp_reading would pass for an SNMP meter; the collector's series are its own.
    m = Meter(role="facility_input", measurement=measurement, tags={"device": "incomer"}, field="value", unit="Wh",
              register=True)
    assert [k for k, _ in m.check()] == ["measurement"]
    with pytest.raises(ValueError, match=f"'{measurement}' is"):
        schema.meter_sources("s", m)
