"""collector/pacing.Pacer: how long an answer waits for the store, on a real event loop and a real
thread standing for the store writer (it lowers the backlog and says so, as the writer's on_write does)."""

from __future__ import annotations

import asyncio
import threading
import time

from puewatch.collector.pacing import Pacer


class _Backlog:
    def __init__(self, size: int, up: bool = True) -> None:
        self.size = size
        self.up = up

    def pacer(self, limit: int, max_s: float) -> Pacer:
        return Pacer(lambda: self.size, lambda: self.up, limit, max_s)


def _wait_while_a_write(pacer: Pacer, after_s: float, change) -> float:
    """pacer.wait() on a real loop while a thread, after `after_s`, applies `change` and says a write finished."""

    def writer():
        time.sleep(after_s)
        change()
        pacer.written()

    async def main():
        t = threading.Thread(target=writer)
        t.start()
        waited = await pacer.wait()
        t.join()
        return waited

    return asyncio.run(main())


def test_waits_until_the_store_catches_up():
    backlog = _Backlog(10_000)
    pacer = backlog.pacer(1_000, 5.0)
    waited = _wait_while_a_write(pacer, 0.3, lambda: setattr(backlog, "size", 500))  # the store caught up
    assert 0.25 <= waited < 1.0, waited  # woken by the write, not by the 5 s bound


def test_waits_at_most_max_s():
    pacer = _Backlog(10_000).pacer(1_000, 0.4)
    waited = asyncio.run(pacer.wait())
    assert 0.4 <= waited < 1.0, waited


def test_never_waits_while_the_store_is_away_or_when_off():
    assert asyncio.run(_Backlog(10_000, up=False).pacer(1_000, 5.0).wait()) == 0.0
    assert asyncio.run(_Backlog(10_000).pacer(0, 5.0).wait()) == 0.0  # pace_backlog_bytes = 0: off
    assert asyncio.run(_Backlog(10_000).pacer(1_000, 0.0).wait()) == 0.0  # pace_max_s = 0: off
    assert asyncio.run(_Backlog(1_000).pacer(1_000, 5.0).wait()) == 0.0  # at the limit: not behind


def test_stops_waiting_when_the_store_goes_away():
    backlog = _Backlog(10_000)
    pacer = backlog.pacer(1_000, 5.0)
    # A write failed: the spool rides it out, answers no longer wait.
    waited = _wait_while_a_write(pacer, 0.2, lambda: setattr(backlog, "up", False))
    assert 0.15 <= waited < 1.0, waited


def test_written_without_waiters_or_loop_is_harmless():
    pacer = _Backlog(0).pacer(1_000, 1.0)
    pacer.written()  # nothing waits, no loop yet
    assert asyncio.run(pacer.wait()) == 0.0
    pacer.written()  # the loop that ran is closed now
