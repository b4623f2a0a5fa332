"""A real ingest server on 127.0.0.1 (its own event loop in a thread) with a recording sink."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from puewatch.collector.ingest import IngestConfig, IngestServer, Tokens
from puewatch.collector.lineparse import Point
from puewatch.collector.scopes import parse_scope

TOKENS = {"node-a": "tok-aaaaaaaaaaaaaaaaaaaa", "node-b": "tok-bbbbbbbbbbbbbbbbbbbb"}
# The protocol tests write any node's lines with either token: both are relays for every node.
# test_ingest_scopes.py gives its servers the token file's own scopes.
RELAY_SCOPES = {name: parse_scope("agent:*") for name in TOKENS}


class RecordingSink:
    def __init__(self, subscribed: frozenset[str] = frozenset({"gpu_power"})) -> None:
        self.subscribed = subscribed
        self.calls: list[tuple[str, bytes, int, list[Point]]] = []
        self.lock = threading.Lock()

    def accept(self, agent: str, body: bytes, lines: int, points: list[Point]) -> None:
        with self.lock:
            self.calls.append((agent, body, lines, points))

    def body(self) -> bytes:
        with self.lock:
            return b"".join(c[1] for c in self.calls)


class ServerThread:
    def __init__(self, config: IngestConfig, sink: RecordingSink, tokens: Tokens | None = None, scopes=None) -> None:
        self.config = config
        self.sink = sink
        self.loop = asyncio.new_event_loop()
        self.server = IngestServer(config, tokens or Tokens(TOKENS, RELAY_SCOPES), sink, scopes)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        self.port = self.server.port
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def stats(self):
        return self.server.stats


@pytest.fixture
def make_server() -> Iterator:
    started: list[ServerThread] = []

    def make(sink: RecordingSink | None = None, tokens: Tokens | None = None, scopes=None, **overrides) -> ServerThread:
        cfg = IngestConfig(port=0, token_file="(given directly)", **overrides)
        s = ServerThread(cfg, sink or RecordingSink(), tokens, scopes).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def server(make_server) -> ServerThread:
    return make_server(header_timeout_s=2.0, body_timeout_s=2.0, idle_timeout_s=3.0, max_body_bytes=1024 * 1024)


def write_tokens(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path
