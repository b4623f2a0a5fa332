"""Issue 12 items 3 and 4 against a real `puewatch collector` process and its embedded store: a forged write
with each kind of token (agent, relay, feeder) is refused whole with 403 naming the series, and nothing of it
is stored; a string where the schema fixes a number is refused even as the first write of its series."""

from __future__ import annotations

import http.client
import json
import time

from collector_support import FEEDER_TOKEN, TOKEN, CollectorProcess, free_port, scrape, write_config

from puewatch.collector.stores.embedded import EmbeddedStore

RELAY_TOKEN = "relay-token-0123456789abcdef"
T = time.time_ns() - 600 * 10**9


def _write(port: int, token: str, body: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/api/v2/write?bucket=b&org=o&precision=ns", body=body.encode(),
                     headers={"Authorization": f"Token {token}"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data).get("message", "") if data else ""
    finally:
        conn.close()


FORGED = [  # (token, body, the series the 403 names)
    (TOKEN, f"gpu_power,gpu=0,node=gpu-a-2 power_average_w=999 {T}\n", "gpu_power,gpu=0,node=gpu-a-2"),
    (TOKEN, f"modbus,meter=incomer power_kw=999 {T}\n", "modbus,meter=incomer"),
    (TOKEN, f"snmp_reading,device=incomer,reading=total,site=lab,unit=W value=999 {T}\n", "snmp_reading"),
    (TOKEN, f"pue,site=lab,window=1m value=0.5 {T}\n", "pue,site=lab,window=1m"),
    (RELAY_TOKEN, f"gpu_power,gpu=0,node=gpu-a-1 power_average_w=999 {T + 1}\n", "gpu_power,gpu=0,node=gpu-a-1"),
    (FEEDER_TOKEN, f"modbus,meter=crac power_kw=999 {T}\n", "modbus,meter=crac"),
    (FEEDER_TOKEN, f"gpu_power,gpu=0,node=gpu-a-1 power_average_w=999 {T + 2}\n", "gpu_power,gpu=0,node=gpu-a-1"),
    (FEEDER_TOKEN, f"site_energy,site=lab energy_wh=1 {T}\n", "site_energy,site=lab"),
]


def test_forged_writes_with_each_kind_of_token_are_refused_and_never_stored(tmp_path):
    ingest_port, metrics_port = free_port(), free_port()
    conf = write_config(tmp_path, ingest_port, metrics_port)
    tokens = tmp_path / "tokens"
    tokens.write_text(tokens.read_text() + f"relay {RELAY_TOKEN} agent:gpu-b-*\n")
    with CollectorProcess(conf, ingest_port) as proc:
        # The first write of a gpu_power series with a string: refused, as a number is what the schema fixes.
        status, message = _write(ingest_port, TOKEN, f'gpu_power,gpu=1,node=gpu-a-1 power_average_w="x" {T}\n')
        assert status == 400 and "power_average_w" in message, message
        for token, body, series in FORGED:
            status, message = _write(ingest_port, token, body)
            assert status == 403 and series in message, (body, status, message)
        assert _write(ingest_port, TOKEN, f"gpu_power,gpu=1,node=gpu-a-1 power_average_w=301.5 {T}\n")[0] == 204
        assert _write(ingest_port, RELAY_TOKEN, f"gpu_power,gpu=0,node=gpu-b-3 power_average_w=280.5 {T}\n")[0] == 204
        assert _write(ingest_port, FEEDER_TOKEN, f"modbus,meter=incomer power_kw=130 {T}\n")[0] == 204
        m = scrape(metrics_port)
        assert m["puewatch_ingest_forbidden_total"] == len(FORGED)
        proc.stop()
    store = EmbeddedStore(tmp_path / "state" / "puewatch.sqlite")
    assert store.series("gpu_power", "power_average_w", {"node": "gpu-a-1", "gpu": "1"}, 0, 2**62)[1].tolist() == [301.5]
    assert store.series("gpu_power", "power_average_w", {"node": "gpu-b-3"}, 0, 2**62)[1].tolist() == [280.5]
    assert store.series("gpu_power", "power_average_w", {"node": "gpu-a-2"}, 0, 2**62)[0].size == 0
    assert store.series("gpu_power", "power_average_w", {"node": "gpu-a-1", "gpu": "0"}, 0, 2**62)[0].size == 0
    assert store.series("modbus", "power_kw", {"meter": "incomer"}, 0, 2**62)[1].tolist() == [130.0]
    assert store.series("modbus", "power_kw", {"meter": "crac"}, 0, 2**62)[0].size == 0
    assert store.series("snmp_reading", "value", {"device": "incomer"}, 0, 2**62)[0].size == 0
    assert all(v != 0.5 for v in store.series("pue", "value", {"site": "lab"}, 0, 2**62)[1].tolist())
    assert store.series("site_energy", "energy_wh", {"site": "lab"}, T - 1, T + 1)[0].size == 0
    store.close()
