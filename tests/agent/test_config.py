"""agent.toml validation: every error names the file, the key path and what is allowed."""

import subprocess
import sys
from pathlib import Path

import pytest

from puewatch.agent import config as agent_config
from puewatch.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
[output]
url = "http://127.0.0.1:8086/api/v2/write"
[sources.sim]
"""


def load_text(tmp_path, text):
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p, agent_config.load(p)


def error_of(tmp_path, text) -> str:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        agent_config.load(p)
    message = str(exc.value)
    assert message.startswith(f"{p}: "), message
    assert "\n" not in message
    return message


def test_sample_config_loads():
    # The sample names a token file that exists only on a real node: check it without it.
    text = (REPO / "config" / "agent.toml").read_text().replace('token_file = "/run/credentials/puewatch-agent.service/agent-token"', "")
    from puewatch import config as cfg
    import tomllib

    conf = cfg.build(agent_config.AgentConfig, tomllib.loads(text), "config/agent.toml")
    assert conf.sources.nvml is not None and conf.sources.nvml.interval_s == 0.1
    assert conf.sources.host is not None
    assert conf.agent.tags == {"site": "fra1", "rack": "r12"}
    assert conf.output.write_url() == "https://collector.example:8087/api/v2/write?bucket=puewatch&org=dc-ops&precision=ns"


def test_minimal_config_defaults(tmp_path):
    _, conf = load_text(tmp_path, MINIMAL)
    assert conf.agent.node  # the host name
    assert conf.sources.sim.gpus == 8 and conf.sources.nvml is None
    assert conf.output.auth_scheme == "Token"


@pytest.mark.parametrize(
    "text,expected",
    [
        (MINIMAL + "[agent]\nflush_intervall_s = 1\n", ["agent.flush_intervall_s", "unknown key", "flush_interval_s"]),
        (MINIMAL.replace("[sources.sim]", "[sources.sim]\nprofile = \"gaming\""), ["sources.sim.profile", "'idle', 'training', 'inference', 'bursts'", "'gaming'"]),
        (MINIMAL + "[agent]\nspool_max_bytes = 10\n", ["agent.spool_max_bytes", "at least 65536", "10"]),
        (MINIMAL + "[agent]\nflush_interval_s = \"5s\"\n", ["agent.flush_interval_s", "must be a number", "'5s'"]),
        (MINIMAL + "[agent]\nlog_level = \"verbose\"\n", ["agent.log_level", "'debug', 'info', 'warning', 'error'"]),
        (MINIMAL + "[agent]\ntags = { site = 3 }\n", ["agent.tags.site", "must be a string"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\ninterval_s = 0\n"), ["sources.nvml.interval_s", "at least 0.01"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\ngpus = [0, \"1\"]\n"), ["sources.nvml.gpus[1]", "GPU index", "GPU UUID", "'1'"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\ngpus = [0, 1.5]\n"), ["sources.nvml.gpus[1]", "must be integer or string", "1.5"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\ngpus = [-1]\n"), ["sources.nvml.gpus[0]", "GPU index", "-1"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\ninterval_s = 2\n"), ["sources.nvml.energy_interval_s", "at least interval_s (2.0)"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\noptional = \"yes\"\n"), ["sources.nvml.optional", "boolean"]),
        (MINIMAL.replace("[sources.sim]", "[sources.gpu]\n"), ["sources.gpu", "unknown key", "nvml, host, sim"]),
        (MINIMAL.replace("[sources.sim]", ""), ["sources", "no source configured"]),
        (MINIMAL.replace("[sources.sim]", "[sources.jobs]\n"), ["sources", "reads the GPUs through the nvml source", "[sources.nvml]"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\nenergy_interval_s = 5\n[sources.jobs]\ninterval_s = 5\n"),
         ["sources", "jobs.interval_s", "at least twice", "(5.0)"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\n[sources.host]\ninterval_s = 10\n[sources.jobs]\n"
                                            "interval_s = 15\n"),
         ["sources", "jobs.interval_s", "at least twice [sources.host] interval_s (10.0)", "RAPL"]),
        (MINIMAL.replace("[sources.sim]", "[sources.host]\ninterval_s = 40\n"),
         ["sources.host.interval_s", "must be at most 15 with rapl = true, got 40"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\n[sources.jobs]\nsysfs_root = \"/sys\"\n"),
         ["sources.jobs.sysfs_root", "unknown key"]),
        (MINIMAL.replace("[sources.sim]", "[sources.nvml]\n[sources.jobs]\nhost_estimate_w = -1\n"),
         ["sources.jobs.host_estimate_w", "at least 0"]),
        ("[sources.sim]\n", ["output", "is required"]),
        (MINIMAL.replace("http://127.0.0.1:8086/api/v2/write", "ftp://x/"), ["output.url", "http:// or https://"]),
        (MINIMAL + "[output]\n", ["invalid TOML"]),
        (MINIMAL.replace("[output]", "[output]\nauth_scheme = \"Basic\""), ["output.auth_scheme", "'Token', 'Bearer'"]),
        (MINIMAL.replace("[output]", "[output]\ntoken_file = \"/nonexistent/token\""), ["output.token_file", "/nonexistent/token"]),
        (MINIMAL.replace("[output]", "[output]\nca_file = \"/nonexistent/ca.pem\""), ["output.ca_file", "/nonexistent/ca.pem"]),
        (MINIMAL.replace("[sources.sim]", "[sources.sim]\nidle_w = 800\n"), ["sources.sim.idle_w", "below power_limit_w"]),
        ("unknown_table = 1\n" + MINIMAL, ["unknown_table", "allowed keys: output, agent, sources"]),
        (MINIMAL + "typo = 1\n", ["sources.sim.typo", "allowed keys: gpus, profile, seed"]),
        # Found by the operator audit: each passed --check-config. A URL's precision won over the agent's ns (every
        # batch refused, spooled, dropped); a `node` tag replaced the agent's (every batch 403); `time` crashed the
        # agent at its first line.
        (MINIMAL.replace("/api/v2/write", "/api/v2/write?precision=ms"), ["output.url", "precision=ms", "nanoseconds"]),
        (MINIMAL + "[agent]\ntags = { node = \"x\" }\n", ["agent.tags.node", "a tag the agent sets itself", "agent.node"]),
        (MINIMAL + "[agent]\ntags = { gpu = \"7\" }\n", ["agent.tags.gpu", "a tag the agent sets itself"]),
        (MINIMAL + "[agent]\ntags = { time = \"t\" }\n", ["agent.tags.time", "reserved"]),
        (MINIMAL + "[agent]\ntags = { rack = \"\" }\n", ["agent.tags.rack", "is empty"]),
    ],
)
def test_bad_config_names_file_key_and_allowed(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    for part in expected:
        assert part in message, message


def test_secret_token_never_echoed(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("[output]", "[output]\ntoken = 12345678"))
    assert "output.token" in message and "12345678" not in message


def test_token_file_is_read(tmp_path):
    (tmp_path / "tok").write_text("s3cret\n")
    _, conf = load_text(tmp_path, MINIMAL.replace("[output]", f'[output]\ntoken_file = "{tmp_path / "tok"}"'))
    assert conf.output.token == "s3cret"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        agent_config.load(tmp_path / "nope.toml")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "puewatch.cli", *args], capture_output=True, text=True, timeout=60)


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    r = run_cli("agent", "--config", str(good), "--check-config")
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "sim" in r.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[agent]\nspool_max_bytes = -1\n")
    r = run_cli("agent", "--config", str(bad), "--check-config")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert f"{bad}: agent.spool_max_bytes: must be at least 65536" in r.stderr
    # Both of the ledger's interval rules broken: --check-config says both at once (it said the second only once
    # the first was mended: found by the ledger audit).
    bad.write_text(MINIMAL.replace("[sources.sim]", "[sources.nvml]\nenergy_interval_s = 0.6\n[sources.host]\n"
                                   "interval_s = 0.6\n[sources.jobs]\ninterval_s = 1.0\nsample_interval_s = 0.5\n"))
    r = run_cli("agent", "--config", str(bad), "--check-config")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "at least twice [sources.nvml] energy_interval_s (0.6)" in r.stderr, r.stderr
    assert "at least twice [sources.host] interval_s (0.6)" in r.stderr, r.stderr


def test_reference_document_is_generated_from_the_models():
    text = agent_config.reference()
    for key in ("spool_max_bytes", "flush_interval_s", "token_file", "ca_file", "state_interval_s", "sysfs_root", "profile"):
        assert f"`{key}`" in text
    assert "## `[sources.nvml]`" in text and "## `[output]`" in text
    assert "'idle', 'training', 'inference', 'bursts'" in text
    # The committed reference is the generated one (regenerate: python -m puewatch.agent.config).
    assert (REPO / "agent" / "CONFIG.md").read_text() == text
