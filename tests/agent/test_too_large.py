"""A batch larger than the collector takes (413: the agent's batch_max_bytes above the collector's
[ingest] max_body_bytes) is sent in parts, and every reading still reaches the store: a real agent
(the fake NVML library, with its log of every energy reading as the ground truth) ships to a real
`puewatch collector` whose body limit is 1 KiB, writing to its embedded store. A line that is
alone too large is the only thing set aside, counted as dropped."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from agent_support import Receiver, nvml_env, start_agent, wait_for, write_config
from test_outage import readings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from collector_support import CollectorProcess, free_port, scrape  # noqa: E402
from collector_support import write_config as collector_config  # noqa: E402

from puewatch.collector.stores.embedded import EmbeddedStore  # noqa: E402

AGENT_TOKEN = "testnode-token-0123456789abcdef"
LIMIT = 1024  # the collector's max_body_bytes: the least it allows


def _collector(tmp_path: Path) -> tuple[Path, int, int]:
    ingest_port, metrics_port = free_port(), free_port()
    conf = collector_config(tmp_path, ingest_port, metrics_port)
    conf.write_text(conf.read_text().replace("[ingest]\n", f"[ingest]\nmax_body_bytes = {LIMIT}\n", 1))
    tokens = tmp_path / "tokens"
    tokens.write_text(tokens.read_text() + f"testnode {AGENT_TOKEN}\n")
    return conf, ingest_port, metrics_port


def _stopped(out: str) -> str:
    return [line for line in out.splitlines() if "stopped:" in line][-1]


def test_batches_too_large_for_the_collector_are_split_and_every_reading_is_stored(tmp_path, procs, fake_nvml_dir):
    conf, ingest_port, metrics_port = _collector(tmp_path)
    script = tmp_path / "gpus.txt"
    script.write_text("count 2\n")
    nvml_log = tmp_path / "nvml.log"
    # Energy on every power sample, so that every gpu_power point has a ground truth; 2 GPUs at 10 Hz
    # fill several KiB a flush (0.5 s), several times the collector's limit.
    table = "[sources.nvml]\ninterval_s = 0.1\nenergy_interval_s = 0.1\nstate_interval_s = 1.0\n"
    cfg = write_config(tmp_path / "agent.toml", f"http://127.0.0.1:{ingest_port}", tmp_path / "spool", table,
                       output_extra=f'token = "{AGENT_TOKEN}"')
    with CollectorProcess(conf, ingest_port) as collector:
        agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script, nvml_log))
        wait_for(lambda: "as too large (413" in agent.output(), 30, "the agent meets the 413")
        wait_for(lambda: scrape(metrics_port).get("puewatch_ingest_too_large_total", 0) >= 3
                 and len(nvml_log.read_text().splitlines()) > 100, 30, "more batches split")
        assert agent.stop() == 0, agent.output()
        out = agent.output()
        m = scrape(metrics_port)
        collector.stop()
    assert _stopped(out).endswith(" 0 dropped"), _stopped(out)
    assert "as too large (413" in out and out.count("as too large (413") == 1, "logged once"
    assert "max_body_bytes" in out
    assert not list((tmp_path / "spool").glob("*.rec")), "every batch delivered"
    assert not (tmp_path / "spool" / "rejected").exists() or not list((tmp_path / "spool" / "rejected").iterdir())
    assert m["puewatch_ingest_too_large_total"] >= 3

    taken = readings(nvml_log)
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    try:
        got = Counter()
        for gpu in range(2):
            _, mj = store.series("gpu_power", "energy_mj", {"node": "testnode", "gpu": str(gpu)}, 0, 2**62)
            got.update((gpu, int(v)) for v in mj)
        _, split = store.series("puewatch_agent", "split_batches", {"node": "testnode"}, 0, 2**62)
    finally:
        store.close()
    assert sum(taken.values()) > 100
    assert got == taken  # every reading taken is stored, once
    assert split.size and split.max() >= 3  # the agent's own count, in its self-report


def test_a_line_alone_too_large_is_the_only_one_set_aside_and_counted(tmp_path, procs, fake_nvml_dir):
    conf, ingest_port, metrics_port = _collector(tmp_path)
    script = tmp_path / "gpus.txt"
    script.write_text("count 1\n")
    # A tag on every line long enough that no line fits the collector's limit: the sources' lines
    # are each set aside; nothing loops, and the count of dropped points is the count set aside.
    cfg = write_config(tmp_path / "agent.toml", f"http://127.0.0.1:{ingest_port}", tmp_path / "spool",
                       "[sources.nvml]\ninterval_s = 0.2\n", agent_extra=f'tags = {{ rack = "{"r" * LIMIT}" }}',
                       output_extra=f'token = "{AGENT_TOKEN}"')
    with CollectorProcess(conf, ingest_port) as collector:
        agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
        wait_for(lambda: "as too large (413" in agent.output(), 30, "the agent meets the 413")
        assert agent.stop() == 0, agent.output()
        out = agent.output()
        collector.stop()
    aside = list((tmp_path / "spool" / "rejected").glob("*.lp"))
    lines = [line for f in aside for line in f.read_bytes().splitlines()]
    assert lines and all(len(line) > LIMIT for line in lines)
    dropped = int(_stopped(out).rsplit(" ", 2)[1])
    assert dropped == len(lines), (_stopped(out), len(lines))  # counted: every line set aside, and only they
    assert " 0 point(s) sent," in _stopped(out)  # no line fitted: none counted as sent
    # Said once a batch: the lines its error lines name add up to those set aside (it logged a line a part,
    # also for parts of a batch later sent again whole: found by the agent audit).
    said = [int(m) for m in re.findall(r"collector refused (\d+) line\(s\) of batch", out)]
    said += [int(m) for m in re.findall(r"collector refused batch \S+ with 413: [^\n]*?; (\d+) point\(s\) moved", out)]
    assert said and sum(said) == len(lines), (said, len(lines))
    assert not list((tmp_path / "spool").glob("*.rec")), "nothing left to retry for ever"


def test_a_split_cut_short_drops_nothing_and_says_nothing_dropped(tmp_path, procs, fake_nvml_dir):
    """Found by the agent audit: a batch refused as too large is split; where one half was refused (400) and
    the next met a 503, the batch went back to the spool whole and was stored whole later, yet the agent had
    already logged the first half's lines as set aside and dropped. The receiver answers the first batch 413,
    its first half 400 and its second 503, then stores everything: nothing is dropped, and nothing is said to be."""
    rx = Receiver(procs, tmp_path, script="413,400,503").start()
    script = tmp_path / "gpus.txt"
    script.write_text("count 1\n")
    cfg = write_config(tmp_path / "agent.toml", rx.url, tmp_path / "spool", "[sources.nvml]\ninterval_s = 0.1\n")
    agent = start_agent(procs, cfg, tmp_path / "agent.log", nvml_env(fake_nvml_dir, script))
    wait_for(lambda: len(rx.lines()) > 50, 30, "the batches stored after the scripted answers")
    assert agent.stop() == 0, agent.output()
    out = agent.output()
    assert "as too large (413" not in out  # the split never finished: the batch was stored whole
    assert "set aside" not in out and "collector refused" not in out, out
    assert _stopped(out).endswith(" 0 dropped"), _stopped(out)
    assert not list((tmp_path / "spool" / "rejected").glob("*.lp"))
