"""The collector's kernels come from Numba's cache at start, not from a compiler.

`compile_kernels()` runs before the collector opens ingest or polls a meter, holding the GIL:
from a warm cache it takes a fraction of a second, compiled it takes tens of seconds on a
small machine. A kernel whose cache entry never matches is compiled at every start and the
cache grows by one entry each time; that happened to the rolling kernel's parallel loop,
whose closure held a dispatcher (pickled with an identifier new in every process, and
Numba keys a closure's cache entries on its variables). Checked here on Numba's own cache
log: in a new process, with the cache the session's start filled (tests/conftest.py),
every kernel is loaded and none is saved, i.e. none was compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = "from puewatch.collector.pipeline import compile_kernels; compile_kernels()"


def _cache_log(env_extra: dict[str, str]) -> list[str]:
    env = {**os.environ, "NUMBA_DEBUG_CACHE": "1", **env_extra}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("[cache]")]


def test_second_start_compiles_nothing() -> None:
    _cache_log({})  # fills the cache where the session's start did not
    log = _cache_log({})
    saved = [line for line in log if "saved" in line]
    assert not saved, "kernels compiled again although the cache holds them:\n" + "\n".join(saved)
    loaded = [line for line in log if "data loaded" in line]
    # The parallel rolling loop (the one that missed; the chunks it calls are linked into it).
    assert any("rolling._parallel.locals.run" in line for line in loaded), "\n".join(log)


def test_cache_key_does_not_depend_on_the_thread_count() -> None:
    """A collector given one thread (NUMBA_NUM_THREADS) loads what a default start cached."""
    _cache_log({})
    log = _cache_log({"NUMBA_NUM_THREADS": "1"})
    saved = [line for line in log if "saved" in line]
    assert not saved, "\n".join(saved)
