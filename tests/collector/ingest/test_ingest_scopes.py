"""Token scopes over real HTTP: forged writes with each kind of token are refused whole (403), proper ones stored."""

from __future__ import annotations

import http.client
import json
import re
import time

import pytest
from ingest_support import RecordingSink, write_tokens

from puewatch.collector.ingest import IngestConfig, Tokens
from puewatch.collector.scopes import WriteScopes
from puewatch.core.site import Meter
from puewatch.errors import ConfigError

TOKEN_FILE = """\
# name token [scope]
node-a   tok-aaaaaaaaaaaaaaaaaaaa
node-b   tok-bbbbbbbbbbbbbbbbbbbb   agent
relay    tok-rrrrrrrrrrrrrrrrrrrr   agent:gpu-c-*
telegraf tok-tttttttttttttttttttt   feeder:incomer
"""
TOK = {name: tok for name, tok, *_ in (line.split() for line in TOKEN_FILE.splitlines()[1:])}
METERS = {
    "incomer": Meter(role="facility_input", measurement="modbus", tags={"meter": "incomer"}, field="power_w", unit="W"),
    "ups": Meter(role="it", point="ups_output", measurement="modbus", tags={"meter": "ups"}, field="energy_wh",
                 unit="Wh", register=True),
}
T = 1_700_000_000_000_000_000
GPU_A = f"gpu_power,gpu=0,node=node-a,uuid=GPU-1 power_average_w=301.5,energy_mj=1000i {T}\n"
GPU_B = f"gpu_power,gpu=0,node=node-b,uuid=GPU-2 power_average_w=280.5,energy_mj=2000i {T}\n"
SNMP = f"snmp_reading,device=incomer,reading=total_active_energy,site=s,unit=Wh value=1e9,raw=1e9 {T}\n"
INCOMER = f"modbus,meter=incomer,host=tg power_w=130000 {T}\n"
UPS = f"modbus,meter=ups energy_wh=5e6 {T}\n"


@pytest.fixture
def scoped(make_server, tmp_path):
    tokens = Tokens.load(IngestConfig(token_file=str(write_tokens(tmp_path / "tokens", TOKEN_FILE))))
    scopes = WriteScopes(tokens.scopes, METERS, "s")
    sink = RecordingSink({"gpu_power": ("energy_mj",), "modbus": ("power_w", "energy_wh")})
    return make_server(sink, tokens=tokens, scopes=scopes)


def write(port: int, writer: str, body: str, v1: bool = False, token: str | None = None) -> tuple[int, dict]:
    token = token or TOK[writer]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        path = f"/write?db=x&u={writer}&p={token}" if v1 else "/api/v2/write?bucket=b&org=o"
        conn.request("POST", path, body=body.encode(), headers={} if v1 else {"Authorization": f"Token {token}"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        conn.close()


def test_proper_writes_are_stored(scoped):
    host_c = f"host,node=gpu-c-07 load1=1.5 {T}\n"
    assert write(scoped.port, "node-a", GPU_A + f"host,node=node-a load1=2 {T}\n")[0] == 204
    assert write(scoped.port, "node-b", GPU_B, v1=True)[0] == 204
    assert write(scoped.port, "relay", host_c)[0] == 204
    assert write(scoped.port, "telegraf", INCOMER)[0] == 204
    # A measurement puewatch does not read is any writer's (nothing of puewatch's depends on it).
    assert write(scoped.port, "node-a", f"cpu,host=x usage=3 {T}\n")[0] == 204
    assert [c[0] for c in scoped.sink.calls] == ["node-a", "node-b", "relay", "telegraf", "node-a"]
    assert scoped.sink.body() == (GPU_A + f"host,node=node-a load1=2 {T}\n" + GPU_B + host_c + INCOMER
                                  + f"cpu,host=x usage=3 {T}\n").encode()
    assert [p.fields for c in scoped.sink.calls for p in c[3]] == [
        {"power_average_w": 301.5, "energy_mj": 1000}, {"power_average_w": 280.5, "energy_mj": 2000}, {"power_w": 130000.0}]
    assert scoped.stats.scope_refused_lines == 0


@pytest.mark.parametrize(
    ("writer", "body", "v1", "why"),
    [
        # node A writing gpu_power for node B, hidden behind its own good line
        ("node-a", GPU_A + GPU_B, False,
         "'node-a' may not write gpu_power,gpu=0,node=node-b,uuid=GPU-2: an agent token writes only its own node's "
         "series (node=node-a)"),
        # the same over v1, a node the relay does not serve
        ("relay", f"host,node=gpu-d-01 load1=1 {T}\n", True,
         "'relay' may not write host,node=gpu-d-01: an agent token writes only its own node's series "
         "(node matching gpu-c-*)"),
        # an agent's series without a node tag
        ("node-a", f"gpu_power,gpu=0 power_average_w=1 {T}\n", False,
         "'node-a' may not write gpu_power,gpu=0: agents' series carry a node tag"),
        # an agent token overwriting the site incomer's SNMP reading
        ("node-a", SNMP, False,
         "'node-a' may not write snmp_reading,device=incomer,reading=total_active_energy,site=s,unit=Wh: "
         "it is the collector's own series; no client writes it"),
        # ... or a derived ratio, even the feeder
        ("telegraf", f"pue,category=1,site=s,window=1h pue=0.5 {T}\n", False,
         "'telegraf' may not write pue,category=1,site=s,window=1h: it is the collector's own series; no client writes it"),
        # a feeder writing a meter not its own
        ("telegraf", INCOMER + UPS, False,
         "'telegraf' may not write modbus,meter=ups: it is the series of meter 'ups'; only a feeder token naming 'ups' writes it"),
        # a feeder writing a series of its measurement that is no meter's
        ("telegraf", f"modbus,meter=spare power_w=1 {T}\n", False,
         "'telegraf' may not write modbus,meter=spare: it is none of the meters 'modbus' holds, and only meters' "
         "feeders write 'modbus'"),
        # an agent writing a meter's series
        ("node-a", INCOMER, True,
         "'node-a' may not write modbus,host=tg,meter=incomer: it is the series of meter 'incomer'; only a feeder token "
         "naming 'incomer' writes it"),
        # a feeder writing an agent's series
        ("telegraf", GPU_A, False,
         "'telegraf' may not write gpu_power,gpu=0,node=node-a,uuid=GPU-1: a feeder token writes only its meters' series"),
    ],
)
def test_forged_writes_are_refused_whole(scoped, writer, body, v1, why):
    lines = body.count("\n")
    status, doc = write(scoped.port, writer, body, v1=v1)
    message = f"{why}; nothing of this request was stored ({lines} line(s))"
    assert (status, doc) == (403, {"error": message} if v1 else {"code": "forbidden", "message": message})
    assert scoped.sink.calls == []  # not even the good lines of the request
    assert scoped.stats.scope_refused_lines == lines and scoped.stats.requests[403] == 1


def test_escaped_and_slow_path_lines_are_checked_too(scoped):
    # A tag value with an escaped space and a string field take the parser's slow path;
    # a line without a timestamp and another precision take the line-by-line one.
    status, doc = write(scoped.port, "node-a", f'gpu_info,gpu=0,node=node-a name="H100" {T}\n'
                        'gpu_info,gpu=0,node=node\\ b name="x"\n')
    assert status == 403 and "may not write gpu_info,gpu=0,node=node b:" in doc["message"]
    assert re.search(r"\(2 line\(s\)\)$", doc["message"])
    assert write(scoped.port, "node-a", 'gpu_info,gpu=0,node=node-a name="H100"\n')[0] == 204
    assert len(scoped.sink.calls) == 1


def test_a_forged_line_refused_for_something_else_still_refuses_the_body(scoped):
    # A forged line that is also refused for its time (an hour ahead of the clock), or that the store
    # would refuse (a field of another type), is read all the same: its series is out of scope, so the
    # body is refused whole (403), where a partial write (400) kept the writer's good line.
    ahead = time.time_ns() + 3600 * 10**9
    bodies = [
        f"gpu_power,gpu=0,node=node-b,uuid=GPU-2 power_average_w=999 {ahead}\n",
        f"gpu_power,gpu=0,node=node-b,uuid=GPU-2 power_average_w=999 {T}\n"
        f'gpu_power,gpu=0,node=node-b,uuid=GPU-2 power_average_w="text" {T + 1}\n',
        f'gpu_info,gpu=0,node=node\\ b name="x" {ahead}\n',  # the slow path's
    ]
    for forged in bodies:
        status, doc = write(scoped.port, "node-a", GPU_A + forged)
        assert status == 403 and "'node-a' may not write gpu_" in doc["message"], doc
        assert doc["message"].endswith(f"({1 + forged.count(chr(10))} line(s))")
    assert scoped.sink.calls == [] and scoped.stats.requests[403] == len(bodies)
    # The request's lines, malformed ones included, in the message; the readable ones counted.
    status, doc = write(scoped.port, "node-a", GPU_A + GPU_B + "gpu_power,node=node-a power_average_w=\n")
    assert status == 403 and doc["message"].endswith("nothing of this request was stored (3 line(s))")
    assert scoped.stats.scope_refused_lines == 2 + 3 + 2 + 2  # the bodies above, malformed lines not counted
    # A forged line malformed after its series key is read all the same (a 400 partial write kept the
    # writer's line, and no forbidden write was counted), on both of the parser's paths.
    bad = ["power_average_w=", "power_average_w=abc", f"power_average_w=1 {T}x", "time=1", "power_average_w=1,",
           f"power_average_w=1i,power_average_w=2 {T}", "name=\"open", "power_average_w=1e999"]
    forbidden = scoped.stats.requests[403]
    for rest in bad:
        own = write(scoped.port, "node-b", f"gpu_power,gpu=0,node=node-b,uuid=GPU-2 {rest}\n")
        assert own[0] == 400 and "unable to parse" in own[1]["message"], (rest, own)  # malformed, in scope
        for key in ("gpu_power,gpu=0,node=node-b,uuid=GPU-2", "gpu_power,node=node\\ b,time=x"):
            status, doc = write(scoped.port, "node-a", GPU_A + f"{key} {rest}\n")
            assert status == 403 and "'node-a' may not write gpu_power" in doc["message"], (key, rest, doc)
    assert scoped.sink.calls == [] and scoped.stats.requests[403] == forbidden + 2 * len(bad)
    # Only a line whose series cannot be read at all leaves the rest a partial write.
    status, doc = write(scoped.port, "node-a", GPU_A + "gpu_power,node=node-b,=x power_average_w=1\n")
    assert status == 400 and doc["message"].startswith("partial write: unable to parse")


def test_many_series_out_of_scope_are_counted(scoped):
    body = "".join(f"gpu_power,gpu=0,node=n{i} power_average_w=1 {T}\n" for i in range(5))
    status, doc = write(scoped.port, "node-a", body)
    assert status == 403 and "(and 4 more series out of scope)" in doc["message"]


def test_feeders_must_name_ingest_meters(tmp_path):
    snmp_meter = Meter(role="it", point="ups_output", device="ups1")
    for text, error in [
        ("t tok-tttttttttttttttttttt feeder:nope\n",
         r"tokens:1: the feeder scope names meter 'nope', which is not in \[meters\] \(ingest meters: incomer, ups\)"),
        ("# feeders\nt tok-tttttttttttttttttttt feeder:pdu\n",
         r"tokens:2: the feeder scope names meter 'pdu', which the collector reads over SNMP"),
        # Columns swapped (`token name scope`; both long enough to pass the line's own checks): the message
        # names the line, never the first column, which is then the secret (found by the collector audit).
        ("Sup3rSecretTokenValue0123456789 telegraf-hall-b-feeder feeder:nope\n", r"^[^S]*tokens:1: the feeder scope"),
    ]:
        tokens = Tokens.load(IngestConfig(token_file=str(write_tokens(tmp_path / "tokens", text))))
        meters = {**METERS, "pdu": snmp_meter}
        with pytest.raises(ConfigError, match=error) as exc:
            WriteScopes(tokens.scopes, meters, "s").check_meters(meters)
        assert "Sup3rSecret" not in str(exc.value) and "'t'" not in str(exc.value)
    tokens = Tokens.load(IngestConfig(token_file=str(write_tokens(tmp_path / "tokens", TOKEN_FILE))))
    assert WriteScopes(tokens.scopes, METERS, "s").unfed_meters() == ["ups"]


def test_scope_column_errors(tmp_path):
    for text, error in [
        ("a aaaaaaaaaaaaaaaa feeder\n", r"tokens:1: the scope \(third word\): scope 'feeder': a feeder names its meters"),
        ("a aaaaaaaaaaaaaaaa agent:\n", r"tokens:1: the scope \(third word\): scope 'agent:': node patterns are"),
        ("a aaaaaaaaaaaaaaaa b c\n", r"tokens:1: expected `name token`, got 4 word\(s\) \(and an optional scope\)$"),
        # The collector README's example once had comments after its tokens (operator audit).
        ("a aaaaaaaaaaaaaaaa  # an agent\n", r"tokens:1: expected `name token`, got 5 word\(s\) \(and an optional "
                                             r"scope\); a comment must be a line of its own"),
    ]:
        write_tokens(tmp_path / "tokens", text)
        with pytest.raises(ConfigError, match=error):
            Tokens.load(IngestConfig(token_file=str(tmp_path / "tokens")))
    # Columns swapped (`name scope token`): the message must not quote what may be the token.
    write_tokens(tmp_path / "tokens", "a agent:gpu-node-rack-* secret-secret-secret-1\n")
    with pytest.raises(ConfigError) as exc:
        Tokens.load(IngestConfig(token_file=str(tmp_path / "tokens")))
    assert "secret-secret-secret-1" not in str(exc.value) and "not a scope" in str(exc.value)


def test_what_the_agent_writes_is_its_node_s_to_write():
    from puewatch.agent.main import SELF_MEASUREMENT
    from puewatch.agent.sources.base import EVENT_MEASUREMENT, Context
    from puewatch.agent.sources.sim import Config, Source
    from puewatch.collector.lineparse import parse
    from puewatch.core import schema

    ctx = Context("gpu-a-1", {"rack": "r12"})
    src = Source(Config(gpus=2, seed=1), ctx)
    ctx.event("sim", "gpu_lost", "GPU 1 lost", T)
    lines = [*src.sample_power(T), *src.sample_state(T), *src.sample_processes(T), *src.sample_info(T),
             *ctx.take_pending()]
    result = parse(("\n".join(lines) + "\n").encode())
    assert result.error_count == 0 and result.lines == len(lines)
    measurements = {m for m, _ in result.series}
    assert {"gpu_power", "gpu_state", "gpu_info", EVENT_MEASUREMENT} <= measurements
    assert measurements | {SELF_MEASUREMENT, "host", "host_rapl"} <= schema.AGENT_MEASUREMENTS
    scopes = WriteScopes(Tokens({"gpu-a-1": "a" * 20, "gpu-a-2": "b" * 20}).scopes)
    assert scopes.refusal("gpu-a-1", result.series) is None
    assert scopes.refusal("gpu-a-2", result.series)[1] == len(result.series)


def test_token_add_writes_both_copies_and_prints_no_token(make_server, tmp_path):
    import os
    import stat
    import subprocess
    import sys

    tokens = tmp_path / "tokens"

    def add(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "puewatch.cli", "token", "add", "--file", str(tokens), *argv],
                              capture_output=True, text=True, timeout=60)

    a = add("node-a")
    f = add("telegraf", "--feeder", "incomer", "--out", str(tmp_path / "tg.token"))
    assert a.returncode == f.returncode == 0, a.stderr + f.stderr
    own_a = (tmp_path / "node-a.token").read_text().strip()
    own_f = (tmp_path / "tg.token").read_text().strip()
    for path in (tokens, tmp_path / "node-a.token", tmp_path / "tg.token"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(own_a) >= 40 and own_a != own_f
    assert own_a not in a.stdout + a.stderr and own_f not in f.stdout + f.stderr
    assert str(tmp_path / "node-a.token") in a.stdout and str(tokens) in a.stdout
    again = add("node-a")
    assert again.returncode == 2 and "'node-a' already has a token" in again.stderr and own_a not in again.stderr
    # What the command wrote is what the collector loads, with the scopes asked for.
    loaded = Tokens.load(IngestConfig(token_file=str(tokens)))
    assert loaded.agent_for(own_a) == "node-a" and loaded.agent_for(own_f) == "telegraf"
    srv = make_server(RecordingSink(), tokens=loaded, scopes=WriteScopes(loaded.scopes, METERS, "s"))
    assert write(srv.port, "node-a", GPU_A, token=own_a)[0] == 204
    assert write(srv.port, "telegraf", INCOMER, token=own_f)[0] == 204
    assert write(srv.port, "telegraf", UPS, token=own_f)[0] == 403
