"""The puewatch command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import puewatch


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "puewatch.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_version_matches_package():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"puewatch {puewatch.__version__}"


def test_help_lists_subcommands():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "bench" in out.stdout


def test_no_command_prints_help_and_fails():
    out = run_cli()
    assert out.returncode == 2
    assert "usage: puewatch" in out.stdout


def test_unknown_command_is_an_error():
    out = run_cli("frobnicate")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_a_misspelt_option_is_named_where_a_required_one_is_missing(tmp_path):
    """`--confg` said only "the following arguments are required: --config" (found by an operator's first use):
    the option it did not know is named first, with the nearest one it has. An abbreviation argparse takes
    (`--check` for `--check-config`) and a negative number are no unknown options."""
    out = run_cli("collector", "--confg", str(tmp_path / "c.toml"), "--check")
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()[-1]
    assert err == ("puewatch collector: error: unknown option --confg (did you mean --config?); "
                   "the following arguments are required: --config"), out.stderr
    out = run_cli("report", "--from", "-5", "--to", "2026-01-01", "--frmat", "json")
    assert out.returncode == 2
    assert "unknown option --frmat (did you mean --format?); the following arguments are required: --config" in \
        out.stderr
    assert "-5" not in out.stderr.splitlines()[-1]


def test_bench_kernels_json_fields():
    out = run_cli("bench", "kernels", "--samples", "20000", "--repeat", "1", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    names = {k["name"] for k in report["kernels"]}
    assert {"register_deltas", "integrate_power", "rolling_pue_15min", "rolling_pue_15min_grid"} <= names
    for k in report["kernels"]:
        assert k["n"] == 20000
        assert k["seconds"] > 0
        assert k["gbytes_per_s"] > 0
        assert k["copy_gbytes_per_s"] > 0
        assert k["pandas_seconds"] is None or k["pandas_seconds"] > 0
        if k["io_floor_seconds"] is not None:
            assert k["io_floor_ratio"] == pytest.approx(k["seconds"] / k["io_floor_seconds"])
            assert ("<= 2x its io floor" in k["missed"]) == (k["io_floor_ratio"] > 2)
        # The output's pages are measured wherever the floor is, and only there.
        assert (k["fresh_pages_seconds"] is None) == (k["io_floor_seconds"] is None)
        assert k["fresh_pages_seconds"] is None or k["fresh_pages_seconds"] > 0
    assert by_name_has_floor(report)
    by_name = {k["name"]: k for k in report["kernels"]}
    assert by_name["rolling_pue_15min_grid"]["pandas_seconds"] > 0


def by_name_has_floor(report) -> bool:
    # every kernel but group_sums (whose output is not one row per sample) has an io floor
    return all((k["io_floor_seconds"] is None) == (k["name"] == "group_sums") for k in report["kernels"])


def test_bench_kernels_table():
    out = run_cli("bench", "kernels", "--samples", "20000", "--repeat", "1", "--no-pandas")
    assert out.returncode == 0, out.stderr
    assert "plain array copy" in out.stdout
    assert "rolling_pue_15min" in out.stdout
    header = next(line for line in out.stdout.splitlines() if line.startswith("kernel"))
    assert header.index("io floor") < header.index("pages") < header.index("x floor")


def test_bench_rejects_tiny_sample_count_cleanly():
    out = run_cli("bench", "kernels", "--samples", "10")
    assert out.returncode == 2
    assert "--samples must be at least 10000" in out.stderr
    assert "Traceback" not in out.stderr


def test_bench_store_json_fields():
    out = run_cli("bench", "store", "--series", "20", "--cells", "10", "--steps", "2", "--devices", "5", "--nodes", "4",
                  "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    w = report["workloads"]
    assert set(w) == {"derived", "snmp", "agent", "ledger"}
    assert w["derived"]["points"] == w["derived"]["lines"] == 20 * 10 * 2
    assert w["snmp"]["lines"] == 5 * 20 * 10 and w["agent"]["lines"] == 4 * 8 * 10 * 4
    assert w["ledger"]["lines"] == 2 * 8 * 10 * 4
    assert w["ledger"]["points"] == w["ledger"]["lines"] * 13 and w["ledger"]["text_lines_per_s"] > 0
    for name, r in w.items():
        keys = {"text_points_per_s", "text_per_line_points_per_s"} | (
            {"typed_points_per_s"} if name not in ("agent", "ledger") else set())
        assert keys <= set(r) and all(r[k] > 0 for k in keys), name
    assert report["target_points_per_s"] == 200_000
    for flag in ("--series", "--nodes"):
        bad = run_cli("bench", "store", flag, "0")
        assert bad.returncode != 0 and "at least 1" in bad.stderr and "Traceback" not in bad.stderr
