"""A fake libnvidia-ml.so.1 (C source beside this file) for tests and `puewatch bench agent`.

It is never loaded by the agent itself: a process sees it only when started with
LD_LIBRARY_PATH pointing at the directory `build()` compiled it into.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from puewatch.errors import UserError

SOURCE = Path(__file__).with_name("fake_nvml.c")
SONAME = "libnvidia-ml.so.1"


def build(directory: str | Path) -> Path:
    """Compile the fake library into `directory`; returns the library's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise UserError("the fake NVML library needs a C compiler: install gcc (Debian: apt-get install gcc)")
    out = directory / SONAME
    cmd = [cc, "-O2", "-Wall", "-fPIC", "-shared", f"-Wl,-soname,{SONAME}", "-o", str(out), str(SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"compiling {SOURCE.name} failed: {proc.stderr.strip()}")
    return out
