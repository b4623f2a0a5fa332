"""SNMPv3 sessions survive an agent restart: a real snmpd restarted mid-test with another engine ID, or
with its boot counter started again, is read again by the same poller; the log names the cause; when the
restarted agent's keys changed too, the error says both (engine ID changed, then the keys)."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from snmp_support import PRIVATE_BASE, V3_USERS, Snmpd
from puewatch import config as cfg
from puewatch.collector.snmp.client import SnmpAuthError, SnmpTimeout
from puewatch.collector.snmp.device import SnmpDevice
from puewatch.collector.snmp.poller import Meter, Poller
from puewatch.collector.snmp.profiles import load_profiles

POWER = f"{PRIVATE_BASE}.1.0"
PROFILES = load_profiles()
ENGINE_A = "puewatch-a"
ENGINE_B = "puewatch-b"


def v3_device(port: int, **kw) -> SnmpDevice:
    ap, ak, pp, pk, _ = V3_USERS["shaaes"]
    data = {"name": "ups1", "host": "127.0.0.1", "port": port, "version": "3", "user": "shaaes", "auth_proto": ap,
            "auth_key": ak, "priv_proto": pp, "priv_key": pk, "timeout_s": 1.0, "retries": 0, "interval_s": 3.0,
            "profile": "generic", "oids": [{"name": "feed_power", "oid": POWER, "quantity": "active_power", "total": True}]}
    return cfg.build(SnmpDevice, data | kw, "test")


@pytest.fixture
def snmpd_a(tmp_path):
    d = Snmpd(tmp_path, engine_id=ENGINE_A)
    try:
        yield d
    finally:
        d.stop()


def power(readings) -> float:
    return next(r.value for r in readings if r.name == "feed_power")


def test_poller_reads_again_after_the_agent_restarts_with_a_new_engine_id(snmpd_a, caplog):
    """The poller's own task, on its schedule: readings before, a restart with another engine ID, readings after."""
    snmpd_a.set_objects({POWER: ("integer", 1200)})
    polls: list[tuple[float, str | None]] = []

    def on_poll(name, t_ns, readings, error):
        polls.append((power(readings), error))

    poller = Poller([v3_device(snmpd_a.port, interval_s=1.5)], on_poll, profiles=PROFILES, start_spread_s=0.0)

    async def until(n_ok: int, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while sum(e is None for _, e in polls) < n_ok and time.monotonic() < end:
            await asyncio.sleep(0.1)

    async def go():
        task = asyncio.create_task(poller.run())
        try:
            await until(2, 20.0)
            before = len(polls)
            snmpd_a.set_objects({POWER: ("integer", 1300)})
            snmpd_a.restart(engine_id=ENGINE_B)
            await until(sum(e is None for _, e in polls) + 2, 30.0)
            return before
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.INFO, logger="puewatch.collector.snmp"):
        before = asyncio.run(go())
    assert [p for p, e in polls[:before] if e is None][:2] == [1200.0, 1200.0], polls
    after = polls[before:]
    assert sum(1 for p, e in after if e is None and p == 1300.0) >= 2, f"no readings after the restart: {after}"
    # the restart costs at most the poll that met it; none blames the keys
    assert not [e for _, e in after if e and ("priv key" in e or "auth key" in e)], after
    logged = [r.getMessage() for r in caplog.records]
    changed = [m for m in logged if "engine ID changed from 0x" in m and "(device restarted or replaced): rediscovered" in m]
    assert changed, logged
    assert ENGINE_A.encode().hex() in changed[0] and ENGINE_B.encode().hex() in changed[0], changed
    assert changed[0].startswith("device ups1 (127.0.0.1:"), changed  # named by its device (SNMP operator audit)
    assert poller.meters["ups1"].client.rediscoveries == 1


def polls_around_a_restart(meter: Meter, restart) -> tuple[list, list | Exception]:
    """Poll, restart snmpd (blocking, between polls: the session is idle), poll again; in one event loop,
    as the poller does (a pysnmp engine belongs to one loop)."""
    async def go():
        try:
            first = await asyncio.wait_for(meter.poll(), 20.0)
            restart()
            try:
                second = await asyncio.wait_for(meter.poll(), 20.0)
            except Exception as exc:  # noqa: BLE001 (the outcome under test)
                second = exc
            return first, second
        finally:
            meter.close()

    return asyncio.run(go())


def test_a_rediscovery_cut_off_mid_discovery_is_noted_when_the_fresh_session_first_answers(snmpd_a, caplog):
    """The poll that meets a restart begins a rediscovery and is cut off (its poll budget) before the fresh
    session answers: the next poll reads on the fresh session, and that is when the rediscovery is counted,
    logged with both engine IDs, and the new engine ID kept (found by CI: the note and the ID were lost)."""
    snmpd_a.set_objects({POWER: ("integer", 900)})
    meter = Meter(v3_device(snmpd_a.port), PROFILES)
    client = meter.client

    async def go():
        try:
            first = await asyncio.wait_for(meter.poll(), 20.0)
            snmpd_a.set_objects({POWER: ("integer", 910)})
            snmpd_a.restart(engine_id=ENGINE_B)
            # The poll's first request gets the new agent's report; the client then starts a fresh engine
            # (its generation moves) and awaits the discovery: cancel it there, as the poll budget would.
            cut = asyncio.create_task(meter.poll())
            while client._generation == 0 and not cut.done():
                await asyncio.sleep(0)
            assert not cut.done(), cut
            cut.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cut
            noted_at_cut = client.rediscoveries
            second = await asyncio.wait_for(meter.poll(), 20.0)
            return first, noted_at_cut, second
        finally:
            meter.close()

    with caplog.at_level(logging.INFO, logger="puewatch.collector.snmp"):
        first, noted_at_cut, second = asyncio.run(go())
    assert (power(first), power(second)) == (900.0, 910.0)
    assert noted_at_cut == 0 and client.rediscoveries == 1
    changed = [r.getMessage() for r in caplog.records if "engine ID changed from 0x" in r.getMessage()]
    assert len(changed) == 1, [r.getMessage() for r in caplog.records]
    assert ENGINE_A.encode().hex() in changed[0] and ENGINE_B.encode().hex() in changed[0], changed
    assert ENGINE_B.encode().hex() in client.engine_id.hex(), client.engine_id


def test_boot_counter_started_again_same_engine_id(snmpd_a):
    """Same engine ID, but the persistent state lost (boots back to 1): read again, no error."""
    snmpd_a.set_objects({POWER: ("integer", 700)})
    meter = Meter(v3_device(snmpd_a.port), PROFILES)

    def restart():
        snmpd_a.restart(engine_id=ENGINE_A, persist_name="persist-after-reflash")
        snmpd_a.set_objects({POWER: ("integer", 710)})

    first, second = polls_around_a_restart(meter, restart)
    assert not isinstance(second, Exception), second
    assert (power(first), power(second)) == (700.0, 710.0)


def test_new_engine_id_and_new_priv_key_blames_the_key_after_saying_what_changed(snmpd_a):
    snmpd_a.set_objects({POWER: ("integer", 500)})
    meter = Meter(v3_device(snmpd_a.port), PROFILES)
    ap, ak, pp, _, level = V3_USERS["shaaes"]
    first, second = polls_around_a_restart(
        meter, lambda: snmpd_a.restart(engine_id=ENGINE_B, users={"shaaes": (ap, ak, pp, "another-priv-key", level)})
    )
    failed = meter.failed(time.time_ns())
    assert power(first) == 500.0
    assert isinstance(second, SnmpAuthError), second
    text = str(second)
    assert "engine ID changed from 0x" in text and "(device restarted or replaced), rediscovered" in text, text
    assert "decryption failed (wrong priv key or priv protocol AES?)" in text, text
    assert all(math.isnan(r.value) for r in failed)


def polls_after(meter: Meter, change, n: int = 3) -> list:
    """One poll that works, `change` (blocking, between polls), then n more: each one's readings or error,
    and how long it took."""
    async def go():
        try:
            out = [await asyncio.wait_for(meter.poll(), 20.0)]
            change()
            for _ in range(n):
                began = time.monotonic()
                try:
                    result = await asyncio.wait_for(meter.poll(), 20.0)
                except Exception as exc:  # noqa: BLE001 (the outcome under test)
                    result = exc
                out.append((result, time.monotonic() - began))
            return out
        finally:
            meter.close()

    return asyncio.run(go())


@pytest.mark.parametrize("engine_id", [ENGINE_A, ENGINE_B], ids=["same-engine-id", "new-engine-id"])
def test_an_agent_restarted_with_another_priv_key_is_blamed_on_the_key_at_every_poll(snmpd_a, engine_id):
    """An agent drops, without a word, a request it cannot decrypt: to the engine that knew it, an agent
    restarted with another priv key was as silent as one that went down, and every poll said "device down
    or unreachable?" (found by the SNMP operator audit; with a new engine ID, every poll but the first).
    A fresh engine's discovery, which the agent answers, tells them apart."""
    snmpd_a.set_objects({POWER: ("integer", 500)})
    meter = Meter(v3_device(snmpd_a.port), PROFILES)
    ap, ak, pp, _, level = V3_USERS["shaaes"]
    first, *after = polls_after(
        meter, lambda: snmpd_a.restart(engine_id=engine_id, users={"shaaes": (ap, ak, pp, "another-priv-key", level)}))
    assert power(first) == 500.0
    for result, _ in after:
        assert isinstance(result, SnmpAuthError) and result.cause == "auth", after
        assert ("the agent answers but not to encrypted requests: decryption failed (wrong priv key or priv protocol "
                "AES?)") in str(result), after


def test_a_v3_device_that_goes_down_times_out_and_is_tried_afresh_once(snmpd_a):
    """Down after it worked: a timeout, "device down", at every poll; the fresh engine that tells a dropped
    request from a silent agent is tried at the first failed poll only (it hears nothing: nothing to tell),
    so the later polls take one timeout, not two."""
    snmpd_a.set_objects({POWER: ("integer", 600)})
    meter = Meter(v3_device(snmpd_a.port), PROFILES)
    first, *after = polls_after(meter, snmpd_a.stop)
    assert power(first) == 600.0
    for result, _ in after:
        assert isinstance(result, SnmpTimeout) and result.cause == "timeout", after
        assert "no response within 1 s (1 try): device down or unreachable?" in str(result), after
    timeout_s = meter.device.timeout_s * (meter.device.retries + 1)
    # The request, then the fresh engine's discovery (pysnmp's timer fires up to a tenth early); later, one.
    assert after[0][1] >= 1.5 * timeout_s, after
    assert all(took < 0.8 * after[0][1] for _, took in after[1:]), after
