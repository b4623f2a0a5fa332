"""A dead device does not stretch its own cycle, and is logged once: a UDP socket that never answers and a
port nothing listens on, beside a live snmpsim meter, polled by the real poller."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from puewatch import config as cfg
from puewatch.benchmarks.snmp import free_udp_port
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.poller import POLL_SHARE, Poller
from puewatch.collector.snmp.profiles import load_profiles

DEAD_INTERVAL_S = 2.0
RUN_S = 7.0


def test_dead_devices_keep_their_cycle_and_are_logged_once(snmpsim_recordings, black_hole, caplog):
    nothing = free_udp_port()
    common = {"host": "127.0.0.1", "interval_s": DEAD_INTERVAL_S, "retries": 1}
    devices = [
        cfg.build(SnmpDevice, {"name": "ups", "host": "127.0.0.1", "port": snmpsim_recordings.port,
                               "community": "ups-mib-three-line", "interval_s": 1.0, "timeout_s": 0.45}, "t"),
        # tries x timeout = the interval, which the config allows: the poll is cut off below it
        cfg.build(SnmpDevice, {"name": "silent", "port": black_hole, "timeout_s": 1.0, **common}, "t"),
        # tries x timeout well inside the interval: the error is the device's own timeout
        cfg.build(SnmpDevice, {"name": "closed", "port": nothing, "timeout_s": 0.4, **common}, "t"),
    ]
    polls: dict[str, list] = {d.name: [] for d in devices}
    poller: Poller

    def on_poll(name, t_ns, readings, error):
        polls[name].append((t_ns, poller.stats[name].last_duration_s, error, readings))

    poller = Poller(devices, on_poll, profiles=load_profiles(), start_spread_s=0.0)

    async def go():
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(RUN_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level(logging.INFO, logger="puewatch.collector.snmp"):
        asyncio.run(go())

    live = polls["ups"]
    assert live and not [e for _, _, e, _ in live if e], [e for _, _, e, _ in live]
    assert all(math.isfinite(next(r.value for r in rs if r.name == "total_active_power")) for *_, rs in live)
    expected_error = {"silent": "poll cut off at 1.8 s (90% of interval_s 2 s)", "closed": "no response within 0.4 s (2 tries)"}
    for name in ("silent", "closed"):
        got, st = polls[name], poller.stats[name]
        errors = [e for _, _, e, _ in got]
        assert len(got) >= RUN_S // DEAD_INTERVAL_S, (name, errors)
        assert all(e and expected_error[name] in e for e in errors), (name, errors)
        # every slot polled, none skipped: the polls end inside their interval
        assert st.skipped_slots == 0, (name, errors)
        slots = [t for t, *_ in got]
        assert all(abs((b - a) / 1e9 - DEAD_INTERVAL_S) < 1e-3 for a, b in zip(slots, slots[1:])), (name, slots)
        assert max(d for _, d, _, _ in got) < DEAD_INTERVAL_S, (name, [d for _, d, _, _ in got], POLL_SHARE)
        # one warning for the device, however many polls failed; the count is in the stats
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and f"device {name}:" in r.getMessage()]
        assert len(warnings) == 1, (name, warnings)
        assert st.failed_in_row == len(got) == st.errors, (name, st)
