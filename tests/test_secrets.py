"""Secrets never printed (issue 12 item 7): real collector and agent processes, their real stdout and stderr
grepped for each password and token they were given.

The store and the collector are unreachable on purpose, so that every warning that names them is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "collector"))

from collector_support import PUEWATCH, TOKEN, free_port, post, wait_port, write_config  # noqa: E402

from puewatch.redact import redact_text, redact_url, register_secret  # noqa: E402

URL_PASSWORD = "UrlPassw0rd-kept-secret"
STORE_PASSWORD = "StorePassw0rd-kept-secret"
AGENT_TOKEN = "AgentT0ken-kept-secret-0123456789"
QUERY_TOKEN = "QueryT0ken-kept-secret-0123456789"


def _run(args: list[str], seconds: float, then=None) -> tuple[int, str]:
    """Run a puewatch process for `seconds` (calling `then()` meanwhile), SIGTERM it; (exit code, stdout+stderr).
    `seconds` 0: run it to its end."""
    if not seconds:
        done = subprocess.run([*PUEWATCH, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        return done.returncode, done.stdout
    proc = subprocess.Popen([*PUEWATCH, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if then is not None:
            then()
        time.sleep(seconds)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def _assert_clean(out: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in out, f"{secret!r} printed:\n{out}"


def test_collector_never_prints_the_store_password(tmp_path):
    ingest_port, metrics_port, dead_port = free_port(), free_port(), free_port()
    extra = (f'[store.influx1]\nurl = "http://admin:{URL_PASSWORD}@127.0.0.1:{dead_port}"\ndatabase = "site"\n'
             f'user = "admin"\npassword = "{STORE_PASSWORD}"\ntimeout_s = 1.0\n')
    conf = write_config(tmp_path, ingest_port, metrics_port, extra)
    code, out = _run(["collector", "--config", str(conf), "--check-config"], 0)
    assert code == 0 and "OK" in out
    _assert_clean(out, URL_PASSWORD, STORE_PASSWORD)

    def write():
        wait_port(ingest_port)
        assert post(ingest_port, f"m,node=gpu-a-1 f=1 {time.time_ns()}\n") == 204

    code, out = _run(["collector", "--config", str(conf)], 4.0, write)
    assert code == 0, out
    assert f"admin:***@127.0.0.1:{dead_port}" in out  # the store is named, its password masked
    _assert_clean(out, URL_PASSWORD, STORE_PASSWORD, TOKEN)


def test_swapped_token_file_names_the_line_not_the_token(tmp_path):
    conf = write_config(tmp_path, free_port(), free_port())
    (tmp_path / "tokens").write_text(f"# agents\n{AGENT_TOKEN} gpu-a-1\n")
    code, out = _run(["collector", "--config", str(conf)], 0)
    assert code == 2, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("puewatch collector: error: ") and f"{tmp_path / 'tokens'}:2:" in last, out
    assert "Traceback" not in out, out
    _assert_clean(out, AGENT_TOKEN)


def test_agent_never_prints_its_token(tmp_path):
    dead_port = free_port()
    token_file = tmp_path / "token"
    token_file.write_text(AGENT_TOKEN + "\n")
    conf = tmp_path / "agent.toml"
    conf.write_text(f"""
[agent]
node = "n1"
spool_dir = "{tmp_path / 'spool'}"
flush_interval_s = 0.3
log_level = "debug"
[output]
url = "http://u:{URL_PASSWORD}@127.0.0.1:{dead_port}/write?db=x&u=u&p={QUERY_TOKEN}"
token_file = "{token_file}"
retry_initial_s = 0.1
retry_max_s = 0.3
[sources.sim]
gpus = 1
""")
    code, out = _run(["agent", "--config", str(conf), "--check-config"], 0)
    assert code == 0 and "p=***" in out, out
    _assert_clean(out, URL_PASSWORD, QUERY_TOKEN, AGENT_TOKEN)
    code, out = _run(["agent", "--config", str(conf)], 3.0)
    assert "unreachable" in out and "p=***" in out, out
    _assert_clean(out, URL_PASSWORD, QUERY_TOKEN, AGENT_TOKEN)
    # a bad URL in the config is quoted masked too
    conf.write_text(conf.read_text().replace("http://u:", "ftp://u:"))
    code, out = _run(["agent", "--config", str(conf), "--check-config"], 0)
    assert code == 2 and "output.url" in out, out
    _assert_clean(out, URL_PASSWORD, QUERY_TOKEN)


def test_redaction_rules():
    assert redact_url("https://a:b@h:1/p?x=1&token=t&p=s") == "https://a:***@h:1/p?x=1&token=***&p=***"
    assert redact_url("http://h/write?db=d&u=u&p=") == "http://h/write?db=d&u=u&p=***"
    assert redact_url("http://h:8086") == "http://h:8086"
    text = "url: /write?db=x&u=u&p=secret1 and token=secret2 but field p=1.5 stays"
    assert redact_text(text) == "url: /write?db=x&u=u&p=*** and token=*** but field p=1.5 stays"
    register_secret("registered-secret-value")
    assert redact_text("it was registered-secret-value!") == "it was ***!"
