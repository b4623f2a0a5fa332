"""What every source shares: jobs, errors, the context that sources write to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from puewatch.lineprotocol import encode_line, series_key

log = logging.getLogger("puewatch.agent")

EVENT_MEASUREMENT = "puewatch_event"


class SourceError(Exception):
    """A source failed to take a sample; the message is for the operator."""


class SourceUnavailable(SourceError):
    """A source cannot start (no driver, no device); fatal unless the source is optional."""


@dataclass
class Job:
    """A sampling function run at a fixed rate; it returns encoded line-protocol lines."""

    name: str
    interval_s: float
    func: Callable[[], list[str]]
    # Whether the lines count as samples (for READY=1 and samples_taken).
    samples: bool = True
    # Also run once right at start-up (descriptions with long periods).
    at_start: bool = False
    # Run in a thread of its own (FixedRateThread) instead of on the event loop's timers: for the
    # sub-second power samples, where a loop wake-up costs twice a sleep's, and for a job whose `prepare`
    # may block (it then holds up its own thread alone).
    hot: bool = False
    # Run before `func`, without the sampling lock that every job's `func` holds: slow I/O that must not stop
    # the other sources while it waits (the kubelet's List, up to its timeout: a hanging kubelet skipped 158
    # power samples; found by the Kubernetes audit). It must touch no state another job's `func` reads except
    # what it hands over itself.
    prepare: Callable[[], None] | None = None


class Context:
    """Given to each source: node identity, common tags, and the event/once-only log helpers."""

    def __init__(self, node: str, tags: dict[str, str] | None = None) -> None:
        self.node = node
        self.tags = {"node": node, **(tags or {})}
        self.pending: list[str] = []  # event lines waiting for the runner
        self.errors = 0  # source errors, for self-monitoring
        self._once: set[tuple[Any, ...]] = set()
        # The sources by name, each added before it opens: a source may read another's readings (the job
        # ledger reads the nvml source's, so each GPU is read once per cycle).
        self.sources: dict[str, Any] = {}

    def key(self, measurement: str, **tags: Any) -> str:
        """Series key with the node's common tags added."""
        return series_key(measurement, {**self.tags, **tags})

    def event(self, source: str, event: str, message: str, time_ns: int, **tags: Any) -> None:
        """Record an event (a GPU lost, a counter reset...) in the stream and the log."""
        message = " ".join(message.split())  # line protocol strings cannot hold newlines
        line = encode_line(self.key(EVENT_MEASUREMENT, source=source, event=event, **tags), {"message": message}, time_ns)
        if line:
            self.pending.append(line)

    def once(self, key: tuple[Any, ...], level: int, message: str, *args: Any) -> bool:
        """Log a message only the first time `key` is seen (unsupported fields, unreadable RAPL)."""
        if key in self._once:
            return False
        self._once.add(key)
        log.log(level, message, *args)
        return True

    def forget(self, key: tuple[Any, ...]) -> None:
        self._once.discard(key)

    def take_pending(self) -> list[str]:
        lines, self.pending = self.pending, []
        return lines
