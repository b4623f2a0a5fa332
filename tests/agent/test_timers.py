"""The agent's schedules keep their deadlines on the monotonic clock: a step of the wall clock (NTP correcting
it) neither stops the jobs nor runs them in a burst (found by the agent audit: with APScheduler's wall-clock
triggers a backward step of an hour stopped state, host, self report and the systemd watchdog ping for an
hour, so systemd killed a healthy agent); a run only a little late is run late, one missed by a whole
period is skipped and counted."""

from __future__ import annotations

import asyncio
import time

from puewatch.agent.main import FixedRateThread, LoopTimers, Stats


def test_loop_timers_go_on_through_a_backward_and_a_forward_step_of_the_wall_clock(monkeypatch):
    runs: list[float] = []
    stats = Stats()
    real_time = time.time
    step = {"s": 0.0}
    monkeypatch.setattr(time, "time", lambda: real_time() + step["s"])

    async def go():
        loop = asyncio.get_running_loop()
        timers = LoopTimers(loop, stats)
        timers.every("job", 0.1, lambda: runs.append(loop.time()), first_wall_s=time.time() + 0.05)
        await asyncio.sleep(0.5)
        step["s"] = -3600.0  # NTP steps the clock back an hour
        await asyncio.sleep(0.5)
        step["s"] = +3600.0  # and forward
        await asyncio.sleep(0.5)
        timers.shutdown()
        n = len(runs)
        await asyncio.sleep(0.3)
        return n

    n = asyncio.run(go())
    assert len(runs) == n  # nothing runs after shutdown
    assert 12 <= n <= 16, n  # ~15 runs in 1.5 s at 10 Hz: none stopped by the step back, no burst after it
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert max(gaps) < 0.35, gaps


def test_a_tick_a_little_late_runs_and_one_missed_by_a_period_is_skipped_and_counted():
    stats = Stats()
    runs: list[float] = []
    slow = {"n": 0}

    def func():
        runs.append(time.monotonic())
        slow["n"] += 1
        if slow["n"] == 3:
            time.sleep(0.13)  # the next tick is 30 ms late: it runs, late, and none is skipped
        if slow["n"] == 6:
            time.sleep(0.35)  # two whole periods missed: skipped and counted

    t = FixedRateThread("power", 0.1, time.time(), func, stats)
    t.start()
    time.sleep(1.3)
    t.stop(2.0)
    assert not t.is_alive()
    assert stats.ticks_missed == 2, (stats.ticks_missed, [round(b - a, 3) for a, b in zip(runs, runs[1:])])
    assert 8 <= len(runs) <= 12, len(runs)


def test_loop_timers_skip_and_count_what_a_stalled_loop_missed():
    stats = Stats()
    runs: list[float] = []

    async def go():
        loop = asyncio.get_running_loop()
        timers = LoopTimers(loop, stats)
        timers.every("job", 0.1, lambda: runs.append(loop.time()))
        await asyncio.sleep(0.25)
        time.sleep(0.45)  # the loop stalls: four deadlines pass
        await asyncio.sleep(0.3)
        timers.shutdown()

    asyncio.run(go())
    assert stats.ticks_missed >= 3, stats.ticks_missed
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert sum(1 for g in gaps if g < 0.05) <= 1, gaps  # no burst of the missed runs
