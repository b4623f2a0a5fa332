"""Flow control at ingest: while the store is up but behind, answers wait for it to catch up.

A collector that takes writes faster than its store stores them builds a backlog: every
batch is on disk (204 means that), and the store writer drains the spool in order. Left
alone, a steady overload fills the spool until ingest must refuse writes (503 + Retry-After),
the data reach the store (and the dashboards) later and later, and the CPU spent taking
writes the store cannot follow is taken from the store where both share a machine.

`Pacer.wait()`, awaited after a body is accepted and before its 204: while the backlog (bytes
acknowledged and not yet stored, `StoreWriter.backlog_bytes`) is over `limit_bytes` and the
store is up, the answer waits, woken by each store write, at most `max_s`. The batch is
already on disk: a client whose answer waits loses nothing, it only sends its next batch
later, which is how a client follows a slower server (as InfluxDB's own synchronous write
path, or Kafka's quotas, delaying responses). While the store is away (`store_up` false) no
answer waits: the spool is there to ride out an outage, and the agents' spools behind it.
A meters' feeder (`feeder:` token) is never held (collector/ingest.py): its few lines are the
facility side of the live PUE, and they are not what fills the store.

`max_s` (default 2 s) stays well under the clients' request timeouts (agent 10 s, Telegraf
5 s): a client that timed out would send the same batch again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Pacer"]

# A waiting answer looks at the backlog again at least this often, even if no write wakes it.
_RECHECK_S = 0.25


class Pacer:
    def __init__(self, backlog_bytes: Callable[[], int], store_up: Callable[[], bool], limit_bytes: int,
                 max_s: float) -> None:
        self.backlog_bytes = backlog_bytes
        self.store_up = store_up
        self.limit_bytes = limit_bytes
        self.max_s = max_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._waiting = 0

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0 and self.max_s > 0.0

    def behind(self) -> bool:
        return self.backlog_bytes() > self.limit_bytes and self.store_up()

    async def wait(self) -> float:
        """Wait while the store is behind (at most max_s); the seconds waited (0.0: none)."""
        if not self.enabled or not self.behind():
            return 0.0
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self._loop, self._event = loop, asyncio.Event()
        event = self._event
        t0 = loop.time()
        deadline = t0 + self.max_s
        self._waiting += 1
        try:
            while self.behind():
                remaining = deadline - loop.time()
                if remaining <= 0.0:
                    break
                event.clear()
                try:
                    async with asyncio.timeout(min(remaining, _RECHECK_S)):
                        await event.wait()
                except TimeoutError:
                    pass
        finally:
            self._waiting -= 1
        return loop.time() - t0

    def written(self) -> None:
        """A store write finished (any thread): waiting answers look at the backlog again."""
        loop, event = self._loop, self._event
        if not self._waiting or loop is None or event is None:
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # the loop is closed: nothing waits any more
            pass
