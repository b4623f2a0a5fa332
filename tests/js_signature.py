"""The JavaScript signer and verifier of report signatures (tests/js/signature.mjs), for any test.

Node and npm are needed: without them a test that asks for them fails (a skipped
cross-language check would pass unnoticed). The npm package is installed from
tests/js/package-lock.json into tests/js/node_modules (ignored by git) on first use.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"


def node_ready() -> str:
    """The path of `node`, with the verifier's npm package installed; fails the test without node or npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the cross-language signature tests (Node >= 18)")
    # Checked and installed under a lock: `make test` runs test files in two processes, and one
    # must not read node_modules while another's `npm ci` is writing it.
    with open(JS_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (JS_DIR / "node_modules" / "canonicalize" / "package.json").is_file():
            out = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True,
                                 timeout=600)
            assert out.returncode == 0, f"npm ci in {JS_DIR} failed:\n{out.stderr}"
    return node


def js(node: str, *args: str | Path) -> subprocess.CompletedProcess:
    """`node tests/js/signature.mjs ARGS...` (verify, sign, rewrite, canonical)."""
    return subprocess.run([node, JS_DIR / "signature.mjs", *map(str, args)], capture_output=True, text=True,
                          timeout=60)
