"""Revoking a writer's token without a restart, against a real `puewatch collector` process over HTTP:
SIGHUP re-reads the token file and swaps the writers whole (collector/main.py, `reload_writers`); a file
that fails the start's checks keeps the writers before it, logged at ERROR naming the file and line and
counted in `puewatch_token_reloads_total{result="failed"}`."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time

from collector_support import FEEDER_TOKEN, TOKEN, CollectorProcess, free_port, scrape, wait_port, wait_until, write_config

OTHER_TOKEN = "other-agent-token-0123456789abcdef"  # agent gpu-a-2's
NEW_TOKEN = "new-agent-token-0123456789abcdef"  # gpu-a-1's replacement
T = time.time_ns() - 600 * 10**9


def _line(node: str, value: float) -> str:
    return f"gpu_power,gpu=0,node={node} power_average_w={value} {T}\n"


def _write(conn: http.client.HTTPConnection, token: str, body: str) -> int:
    conn.request("POST", "/api/v2/write?bucket=b&org=o&precision=ns", body=body.encode(),
                 headers={"Authorization": f"Token {token}"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def _post(port: int, token: str, body: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return _write(conn, token, body)
    finally:
        conn.close()


def _reload(proc: CollectorProcess, metrics_port: int, result: str) -> None:
    """SIGHUP, then wait until /metrics counts one more reload with `result`."""
    key = f'puewatch_token_reloads_total{{result="{result}"}}'
    before = scrape(metrics_port)[key]
    os.kill(proc.proc.pid, signal.SIGHUP)
    wait_until(lambda: scrape(metrics_port)[key] == before + 1, f"{key} = {before + 1}")


def test_a_revoked_token_is_refused_after_sighup_and_a_broken_file_keeps_the_tokens(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    tokens = tmp_path / "tokens"
    feeder = f"telegraf {FEEDER_TOKEN} feeder:incomer,ups\n"
    tokens.write_text(f"gpu-a-1 {TOKEN}\ngpu-a-2 {OTHER_TOKEN}\n{feeder}")
    with CollectorProcess(conf, ingest_port) as proc:
        wait_port(metrics_port)  # /metrics opens just after ingest
        m = scrape(metrics_port)
        assert m['puewatch_token_reloads_total{result="ok"}'] == 0
        assert m['puewatch_token_reloads_total{result="failed"}'] == 0
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 300)) == 204
        assert _post(ingest_port, OTHER_TOKEN, _line("gpu-a-2", 301)) == 204
        # gpu-a-1's keep-alive connection, authenticated before the reload.
        kept = http.client.HTTPConnection("127.0.0.1", ingest_port, timeout=10)
        assert _write(kept, TOKEN, _line("gpu-a-1", 302)) == 204
        # A request whose head (and token) came before the reload and whose body comes after it.
        body = _line("gpu-a-1", 303).encode()
        inflight = socket.create_connection(("127.0.0.1", ingest_port), timeout=10)
        inflight.sendall(b"POST /api/v2/write?precision=ns HTTP/1.1\r\nHost: c\r\n"
                         + f"Authorization: Token {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])

        # gpu-a-1's line removed, then SIGHUP.
        tokens.write_text(f"gpu-a-2 {OTHER_TOKEN}\n{feeder}")
        _reload(proc, metrics_port, "ok")
        inflight.sendall(body[10:])
        assert inflight.recv(4096).startswith(b"HTTP/1.1 204 "), "the request begun before the reload finishes under it"
        inflight.close()
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 304)) == 401
        assert _write(kept, TOKEN, _line("gpu-a-1", 305)) == 401  # on a connection authenticated before, too
        kept.close()
        assert _post(ingest_port, OTHER_TOKEN, _line("gpu-a-2", 306)) == 204
        assert _post(ingest_port, FEEDER_TOKEN, f"modbus,meter=incomer power_kw=130 {T}\n") == 204
        log = proc.output()
        assert ("INFO puewatch.collector: tokens reloaded: 2 writer(s); added: none; removed: gpu-a-1; new token: none; "
                "new scope: none\n") in log, log[-2000:]

        # A broken file (line 2: a token too short): the tokens before it still hold, and it says so.
        tokens.write_text(f"gpu-a-1 {NEW_TOKEN}\ngpu-a-3 short\n{feeder}")
        _reload(proc, metrics_port, "failed")
        assert _post(ingest_port, OTHER_TOKEN, _line("gpu-a-2", 307)) == 204
        assert _post(ingest_port, NEW_TOKEN, _line("gpu-a-1", 308)) == 401
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 309)) == 401
        errors = [line for line in proc.output().splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"{tokens}:2: the token (second word) is shorter" in errors[0], errors
        assert "the 2 writer(s) loaded before still hold" in errors[0]

        # Fixed, with gpu-a-1 back under a new token: the new one writes, the old one still does not.
        tokens.write_text(f"gpu-a-1 {NEW_TOKEN}\ngpu-a-2 {OTHER_TOKEN}\n{feeder}")
        _reload(proc, metrics_port, "ok")
        assert _post(ingest_port, NEW_TOKEN, _line("gpu-a-1", 310)) == 204
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 311)) == 401
        m = scrape(metrics_port)
        assert m['puewatch_token_reloads_total{result="ok"}'] == 2
        assert m['puewatch_token_reloads_total{result="failed"}'] == 1
        assert "tokens reloaded: 3 writer(s); added: gpu-a-1; removed: none; new token: none; new scope: none\n" \
            in proc.output()

        # gpu-a-2's token rotated and its scope widened to gpu-a-*: both are in the log (an audit trail of who
        # may write what; found by an outside audit: neither left a trace), and take effect.
        rotated = "rotated-token-for-gpu-a-2-0123456789"
        tokens.write_text(f"gpu-a-1 {NEW_TOKEN}\ngpu-a-2 {rotated} agent:gpu-a-*\n{feeder}")
        _reload(proc, metrics_port, "ok")
        assert _post(ingest_port, OTHER_TOKEN, _line("gpu-a-2", 312)) == 401
        assert _post(ingest_port, rotated, _line("gpu-a-1", 313)) == 204
        log = proc.output()
        assert ("tokens reloaded: 3 writer(s); added: none; removed: none; new token: gpu-a-2; new scope: gpu-a-2 "
                "agent (node gpu-a-2) -> agent:gpu-a-*\n") in log, log[-2000:]
        for token in (TOKEN, OTHER_TOKEN, NEW_TOKEN, FEEDER_TOKEN, rotated):
            assert token not in log


def test_a_credential_is_reloaded_too_and_an_unchanged_one_says_why(tmp_path):
    # token_credential: read from $CREDENTIALS_DIRECTORY, as under the shipped unit. There systemd's copy is made
    # at the unit's start; here the test edits "the copy" itself, as RefreshOnReload=credentials would.
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    creds = tmp_path / "creds"
    creds.mkdir()
    credential = creds / "ingest-tokens"
    feeder = f"telegraf {FEEDER_TOKEN} feeder:incomer,ups\n"
    credential.write_text(f"gpu-a-1 {TOKEN}\ngpu-a-2 {OTHER_TOKEN}\n{feeder}")
    credential.chmod(0o600)
    conf.write_text(conf.read_text().replace(f'token_file = "{tmp_path / "tokens"}"', 'token_credential = "ingest-tokens"'))
    assert "token_credential" in conf.read_text()
    with CollectorProcess(conf, ingest_port, env={"CREDENTIALS_DIRECTORY": str(creds)}) as proc:
        wait_port(metrics_port)
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 300)) == 204
        _reload(proc, metrics_port, "ok")  # nothing edited
        assert "tokens reloaded: 3 writer(s); added: none; removed: none; new token: none; new scope: none; no token " \
               "changed (token_credential 'ingest-tokens' is the copy systemd made when the unit started" in proc.output()
        credential.write_text(f"gpu-a-2 {OTHER_TOKEN}\n{feeder}")
        _reload(proc, metrics_port, "ok")
        assert _post(ingest_port, TOKEN, _line("gpu-a-1", 301)) == 401
        assert _post(ingest_port, OTHER_TOKEN, _line("gpu-a-2", 302)) == 204
        assert "tokens reloaded: 2 writer(s); added: none; removed: gpu-a-1; new token: none; new scope: none\n" \
            in proc.output()
