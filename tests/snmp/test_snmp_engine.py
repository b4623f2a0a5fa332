"""Engines and the MIB compiler: pysnmp gives each engine a MIB compiler (pysmi builds its parser, ~0.4 s of
CPU) on the engine's first request unless its view already has one. The poller's engines share one view made
with the first engine, so no poll ever builds one: not the first, not a v3 device's own engine, not one made
after a rediscovery. Counted on pysmi's MibCompiler against a real snmpsim, not timed."""

from __future__ import annotations

import asyncio
from unittest import mock

import pysmi.compiler

from puewatch import config as cfg
from puewatch.collector.snmp import client
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.poller import Poller
from puewatch.collector.snmp.profiles import load_profiles


def test_no_poll_builds_a_mib_compiler(snmpsim_recordings):
    devices = [
        cfg.build(SnmpDevice, {"name": f"ups{i}", "host": "127.0.0.1", "port": snmpsim_recordings.port,
                               "community": "ups-mib-three-line", "interval_s": 2.0, "timeout_s": 0.5}, "t")
        for i in range(2)
    ]
    poller = Poller(devices, lambda *a: None, profiles=load_profiles(), start_spread_s=0.0)
    own = client.snmp_engine()  # as a v3 device's own engine, or one made after a rediscovery
    assert own.cache["mibViewController"] is poller._shared_engine().cache["mibViewController"]
    built = mock.Mock(wraps=pysmi.compiler.MibCompiler)
    try:
        with mock.patch.object(pysmi.compiler, "MibCompiler", built), \
                mock.patch("pysnmp.smi.compiler.MibCompiler", built):
            async def polls():
                for _ in range(2):
                    for meter in poller.meters.values():
                        readings = await meter.poll()
                        assert any(r.name == "total_active_power" and r.value is not None for r in readings)
            asyncio.run(polls())
    finally:
        poller.close()
        client._close(own)
    assert built.call_count == 0
