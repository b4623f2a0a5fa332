"""Where the conformance data lives: ../shared beside the checkout (PUEWATCH_SHARED_DIR overrides it).

The data is read in place and never copied into the repository. CI always has the folder, so a
missing one is a failure with a clear message, never a skip (`make test` does not run this folder).
Imported by this unique name (several folders have a conftest.py, so helpers never live there).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _p in (_TESTS, _TESTS / "snmp"):  # servers.py, snmp_support.py
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from puewatch.benchmarks.snmp import Snmpsim  # noqa: E402
from snmp_support import serving  # noqa: E402

REPO = _TESTS.parent
SHARED = Path(os.environ.get("PUEWATCH_SHARED_DIR") or REPO.parent / "shared")
SHARED_SNMP = SHARED / "snmp"


def shared(*parts: str) -> Path:
    """A file or folder of the shared conformance data; a clear failure when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"conformance data not found: {path} (the shared folder must sit beside the checkout, "
            f"or set PUEWATCH_SHARED_DIR; it is never copied into the repository)",
            pytrace=False,
        )
    return path


def shared_snmp() -> Path:
    """../shared/snmp, with its EXPECTED.toml and recordings/."""
    shared("snmp", "EXPECTED.toml")
    shared("snmp", "recordings")
    return SHARED_SNMP


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


def in_oid_order(data: Path, work: Path) -> tuple[Path, list[str]]:
    """A folder in `work` (a temporary folder, never the repository) serving `data`'s recordings in OID
    order: a plain copy of each file already in order, a sorted copy of each that is not (snmpsim's
    GETNEXT follows the file order; some real captures are out of order or repeat an OID, whose first
    line is kept). Copies, never symlinks: snmpsim 1.2 names a symlinked file by its target's path cut
    at the data folder's depth, so the community came out right only where both paths happened to be
    equally deep. Returns the folder and a note per file rewritten."""
    out = work / "recordings"
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    for path in sorted(data.glob("*.snmprec")):
        lines = path.read_text(errors="surrogateescape").splitlines()
        keyed = []
        for line in lines:
            oid = line.split("|", 1)[0]
            keyed.append((_oid_key(oid) if oid.replace(".", "").isdigit() else (), line))
        keys = [k for k, _ in keyed]
        if all(a < b for a, b in zip(keys, keys[1:])):
            shutil.copyfile(path, out / path.name)
            continue
        first: dict[tuple[int, ...], str] = {}
        for k, line in keyed:
            first.setdefault(k, line)
        (out / path.name).write_text("\n".join(first[k] for k in sorted(first)) + "\n", errors="surrogateescape")
        notes.append(f"{path.name}: {len(lines) - len(first)} repeated OID(s) dropped, served sorted")
    return out, notes


@pytest.fixture(scope="session")
def snmpsim_shared(tmp_path_factory) -> Iterator[Snmpsim]:
    """snmpsim serving every recording of ../shared/snmp/recordings (community = file stem), read in place."""
    with serving(shared_snmp() / "recordings", tmp_path_factory.mktemp("snmpsim-shared")) as sim:
        yield sim
