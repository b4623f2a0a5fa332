"""The InfluxDB line-protocol corpus (../shared/conformance/lineprotocol) through the collector's write
endpoint, against each case's recorded expectation or a real influxd 1.6.7 (lineprotocol_support.py)."""

from __future__ import annotations

from conformance_support import shared
from lineprotocol_support import load, run_corpus
from servers import Influxd

# Cases where the collector differs from influxd 1.6.7 on purpose (docs/lineprotocol.md says why).
DELIBERATE: dict[str, str] = {}


def test_every_corpus_case_agrees(tmp_path):
    cases = load(shared("conformance", "lineprotocol", "corpus.jsonl"))
    with Influxd(tmp_path / "influxd") as server:
        run = run_corpus(cases, server, DELIBERATE)
    failures = run.failures()
    shown = "\n".join(f"{o.id} [{o.against}]: {o.detail}" for o in failures[:40])
    forged = [o for o in run.outcomes if o.forged]
    assert not forged, "204 but stored less or other than influxd:\n" + "\n".join(f"{o.id}: {o.detail}" for o in forged[:20])
    assert run.agreement >= 0.99, f"agreement {run.agreement:.4f} over {len(run.judged)} cases:\n{shown}"
