"""`--check-config` alike in the agent and the collector: every problem at once, the files a configuration
names checked the same way (missing: a warning saying how to create it; unreadable or empty: an error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from puewatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PUEWATCH = [sys.executable, "-m", "puewatch.cli"]


def _check(daemon: str, conf: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PUEWATCH, daemon, "--config", str(conf), "--check-config"], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize(("daemon", "keys"), [
    ("agent", ["output.token_file"]),
    ("collector", ["ingest.token_credential", "store.influx1.password_file"]),
])
def test_the_shipped_samples_pass_with_a_warning_per_missing_file(daemon: str, keys: list[str]) -> None:
    """As their headers say to run them: valid, and each file not made yet named with how to make it."""
    out = _check(daemon, ROOT / "config" / f"{daemon}.toml")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"{ROOT / 'config' / f'{daemon}.toml'}: OK ("), out.stdout
    warnings = out.stderr.splitlines()
    assert len(warnings) == len(keys), out.stderr
    for line, key in zip(warnings, keys):
        assert line.startswith(f"puewatch {daemon}: warning: ") and f": {key}: " in line and "does not exist yet" in line
        assert "Traceback" not in line


def test_the_collector_reports_every_problem_and_every_missing_file_at_once(tmp_path: Path) -> None:
    text = (ROOT / "config" / "collector.toml").read_text()
    text = text.replace('token_credential = "ingest-tokens"',
                        f'token_file = "{tmp_path}/tokens"\ntls_cert = "{tmp_path}/cert.pem"\ntls_key = "{tmp_path}/key.pem"')
    text = text.replace('min_coverage = 0.9', 'min_coverage = 1.5\nbogus = 1', 1)  # two problems in [collector]
    text = text.replace('role = "facility_input"', 'role = "facility-input"')  # one in [meters]
    conf = tmp_path / "collector.toml"
    conf.write_text(text)
    out = _check("collector", conf)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert any(f"{conf}: collector.bogus: unknown key" in e for e in errors), errors
    assert any(f"{conf}: collector.min_coverage: must be at most" in e for e in errors), errors
    assert any(f"{conf}: meters.incomer-a.role: must be one of" in e for e in errors), errors
    assert len(errors) == 3 and out.stdout.strip() == f"{conf}: 3 problem(s)", (out.stdout, out.stderr)
    # Fixed, the files it names are the rest: all of them at once.
    conf.write_text(text.replace("min_coverage = 1.5\nbogus = 1", "min_coverage = 0.9")
                    .replace('role = "facility-input"', 'role = "facility_input"'))
    out = _check("collector", conf)
    assert out.returncode == 0, out.stderr
    warned = {line.split(": ")[3] for line in out.stderr.splitlines()}
    assert warned == {"ingest.token_file", "ingest.tls_cert", "ingest.tls_key", "store.influx1.password_file"}, out.stderr
    # A file that exists but is empty: the collector would not start; an error.
    (tmp_path / "tokens").write_text("")
    out = _check("collector", conf)
    assert out.returncode == 2 and f"error: {conf}: ingest.token_file: {tmp_path}/tokens is empty" in out.stderr
    # Bytes that are not text (found by the input audit: OK here, a traceback as the daemon read it).
    (tmp_path / "tokens").write_bytes(b"\xff\xfe\x00secret")
    out = _check("collector", conf)
    assert out.returncode == 2 and (f"error: {conf}: ingest.token_file: {tmp_path}/tokens is not UTF-8 text (invalid "
                                    "start byte at byte 0; the writers' tokens)") in out.stderr, out.stderr
    (tmp_path / "tokens").write_bytes(b"pass\xe9\n")  # a Latin-1 password: its last bytes (closing review)
    out = _check("collector", conf)
    assert out.returncode == 2 and f"{tmp_path}/tokens is not UTF-8 text (invalid continuation byte at byte 4" in out.stderr
    from puewatch.collector.config import read_secret

    with pytest.raises(ConfigError, match=r"--password-file: cannot read .*tokens: not UTF-8 text \(invalid continuation byte"):
        read_secret("", str(tmp_path / "tokens"), "--password-file")


def test_the_agent_reports_every_problem_at_once_and_a_credential_alike(tmp_path: Path) -> None:
    text = (ROOT / "config" / "agent.toml").read_text()
    conf = tmp_path / "agent.toml"
    conf.write_text(text.replace("flush_interval_s = 5.0", "flush_interval_s = -1\ncolour = 'blue'"))
    out = _check("agent", conf)
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert out.returncode == 2 and len(errors) == 2, out.stderr
    assert any("agent.flush_interval_s: must be" in e for e in errors) and any("agent.colour: unknown key" in e
                                                                                for e in errors), errors
    token = tmp_path / "token"
    token.write_text("")
    conf.write_text(text.replace("/run/credentials/puewatch-agent.service/agent-token", str(token)))
    out = _check("agent", conf)
    assert out.returncode == 2 and f"error: {conf}: output.token_file: {token} is empty" in out.stderr
    token.write_text("secret-token\n")
    out = _check("agent", conf)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_the_collector_check_reads_the_token_file_and_its_scopes_with_the_rest_at_once(tmp_path: Path) -> None:
    """Every bad token line, every feeder naming a meter the site does not feed through ingest and the
    configuration's own problems in one run; no word of a token line is printed."""
    text = (ROOT / "config" / "collector.toml").read_text()
    text = text.replace('token_credential = "ingest-tokens"', f'token_file = "{tmp_path}/tokens"')
    conf = tmp_path / "collector.toml"
    conf.write_text(text.replace('min_coverage = 0.9', 'min_coverage = 1.5', 1))
    secret = "s3cr3t-" * 6
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"gpu-node-01 {secret}a\n"
        f"{secret}b gpu-node-02\n"  # columns swapped
        f"telegraf {secret}c feeder:nowhere\n"  # no such meter
        f"snmp-feeder {secret}d feeder:incomer-a\n"  # read over SNMP by the collector
        f"relay {secret}e nodes\n"  # not a scope
    )
    tokens.chmod(0o600)
    out = _check("collector", conf)
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert any("collector.min_coverage: must be at most" in e for e in errors), errors
    assert any(f"{tokens}:2: the token (second word) is shorter" in e for e in errors), errors
    assert any(f"{tokens}:5: the scope (third word)" in e for e in errors), errors
    assert len(errors) == 3 and out.stdout.strip() == f"{conf}: 3 problem(s)", (out.stdout, out.stderr)
    assert "s3cr3t" not in out.stderr + out.stdout and "Traceback" not in out.stderr
    # The configuration valid, the scopes are judged against its meters too: every problem at once.
    conf.write_text(text)
    out = _check("collector", conf)
    errors = [line for line in out.stderr.splitlines() if ": error: " in line]
    assert any(f"{tokens}:2: the token (second word) is shorter" in e for e in errors), errors
    assert any(f"{tokens}:5: the scope (third word)" in e for e in errors), errors
    # Named by the token file's line, never by the token's first column (with the columns swapped, the secret).
    assert any(f"{tokens}:" in e and "names meter 'nowhere', which is not in [meters]" in e for e in errors), errors
    assert any(f"{tokens}:" in e and "names meter 'incomer-a', which the collector reads over SNMP" in e
               for e in errors), errors
    # (the other warning: the sample's store password file, not made yet)
    assert len(errors) == 4 and out.stdout.strip() == f"{conf}: 4 problem(s), 2 warning(s)", (out.stdout, out.stderr)
    assert "meter chw-heat is fed through ingest but no token is its feeder" in out.stderr
    assert "s3cr3t" not in out.stderr + out.stdout and "Traceback" not in out.stderr
    # Fixed: OK, the feeder names the ingest meter, no warning left.
    tokens.write_text(f"gpu-node-01 {secret}a\ntelegraf {secret}c feeder:chw-heat\n")
    out = _check("collector", conf)
    assert out.returncode == 0, out.stderr
    assert [line.split(": ")[3] for line in out.stderr.splitlines()] == ["store.influx1.password_file"], out.stderr


@pytest.mark.parametrize(("daemon", "key", "value"), [
    ("collector", "state_dir", "collector.state_dir"), ("agent", "spool_dir", "agent.spool_dir")])
def test_a_directory_that_can_never_be_made_is_an_error(tmp_path: Path, daemon: str, key: str, value: str) -> None:
    """Found by the operator audit: --check-config said OK for a state_dir under a regular file, which the
    collector then refused at start. Nothing is created by the check."""
    (tmp_path / "file").write_text("x")
    lines = (ROOT / "config" / f"{daemon}.toml").read_text().splitlines()
    where = f"{tmp_path}/file/{key}"
    conf = tmp_path / f"{daemon}.toml"
    conf.write_text("\n".join(f'{key} = "{where}"' if line.startswith(f"{key} =") else line for line in lines) + "\n")
    assert f'{key} = "{where}"' in conf.read_text()
    out = _check(daemon, conf)
    assert out.returncode == 2, out.stderr
    assert (f"error: {conf}: {value}: {where}: {tmp_path}/file is not a directory, so the " in out.stderr), out.stderr
    made = tmp_path / "made" / key
    conf.write_text(conf.read_text().replace(where, str(made)))
    assert _check(daemon, conf).returncode == 0 and not made.parent.exists()


def test_a_meter_s_zone_that_no_zones_table_declares_is_a_warning(tmp_path: Path) -> None:
    """Where the site declares its zones ([zones]), a meter naming another is a zone of its own, with its own pPUE
    and no agents' nodes, which a misspelling makes silently: --check-config warns, naming the meter, the zone
    and the declared ones, and still passes (a hall with meters alone is a zone)."""
    text = (ROOT / "config" / "collector.toml").read_text()
    assert text.count('zone = "hall-a"') >= 1 and "[zones.hall-a]" in text
    conf = tmp_path / "collector.toml"
    conf.write_text(text.replace('zone = "hall-a"', 'zone = "hal-a"', 1))
    out = subprocess.run([sys.executable, "-m", "puewatch.cli", "collector", "--config", str(conf), "--check-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "zone 'hal-a' is no [zones] table (hall-a" in out.stderr and ".zone: zone 'hal-a'" in out.stderr, out.stderr
    assert "warning(s) above" in out.stdout
