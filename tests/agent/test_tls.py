"""Shipping over real TLS: a local HTTPS receiver whose certificate is signed by a CA made here.

With `ca_file` naming that CA the agent verifies the collector and delivers. With another
CA it refuses the certificate, says so in one clear log line, and keeps every point in
the spool (nothing dropped); once it is given the right CA, the spool drains completely.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from pathlib import Path

from agent_support import Receiver, parse_line, start_agent, wait_for, wait_log, write_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from puewatch.diskqueue import decode_record

SIM = '[sources.sim]\ngpus = 2\nprofile = "inference"\n'


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(directory: Path, ca_key, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("collector"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def spooled_lines(spool: Path) -> list[str]:
    return [l for p in sorted(spool.glob("*.rec")) for l in decode_record(p.read_bytes())[0].decode().splitlines() if l]


def test_tls_verified_with_ca_file_and_a_wrong_ca_spools_until_fixed(tmp_path, procs):
    ca_path, ca_key, ca_cert = make_ca(tmp_path, "puewatch-test-ca")
    wrong_ca_path, _, _ = make_ca(tmp_path, "some-other-ca")
    cert, key = make_server_cert(tmp_path, ca_key, ca_cert)
    rx = Receiver(procs, tmp_path, tls_cert=cert, tls_key=key).start()
    assert rx.url.startswith("https://127.0.0.1:")
    spool = tmp_path / "spool"

    # 1. The wrong CA: the certificate is refused, clearly; every point waits in the spool.
    cfg = write_config(tmp_path / "wrong.toml", rx.url, spool, SIM, output_extra=f'ca_file = "{wrong_ca_path}"')
    agent = start_agent(procs, cfg, tmp_path / "agent-wrong.log")
    wait_log(agent, "TLS certificate of 127.0.0.1 not trusted")
    wait_for(lambda: len(list(spool.glob("*.rec"))) >= 2, 20, "batches waiting in the spool")
    assert agent.stop() == 0, agent.output()
    log = agent.output()
    line = next(l for l in log.splitlines() if "not trusted" in l)
    assert "certificate verify failed" in line or "unable to get local issuer certificate" in line, line
    assert "ca_file" in line and "Traceback" not in log
    assert rx.lines() == []  # the agent never sent a byte of data to an unverified server
    waiting = spooled_lines(spool)
    selfs = [parse_line(l)[2] for l in waiting if l.startswith("puewatch_agent")]
    assert selfs and max(s["send_failures"] for s in selfs) > 0
    assert all(s["dropped_points"] == 0 for s in selfs)
    samples = [l for l in waiting if l.startswith("gpu_")]
    assert len(samples) > 20

    # 2. The right CA: verified, and everything that waited is delivered, then the new samples.
    cfg = write_config(tmp_path / "right.toml", rx.url, spool, SIM, output_extra=f'ca_file = "{ca_path}"')
    agent = start_agent(procs, cfg, tmp_path / "agent-right.log")
    wait_for(lambda: set(samples) <= set(rx.lines()), 30, "the spooled points delivered over TLS")
    time.sleep(1.0)
    assert agent.stop() == 0, agent.output()
    assert "not trusted" not in agent.output()
    received = rx.lines()
    assert set(samples) <= set(received)
    final = max((parse_line(l) for l in received if l.startswith("puewatch_agent")), key=lambda p: p[3])[2]
    assert final["dropped_points"] == 0 and final["points_sent"] > len(samples)
    assert spooled_lines(spool) == []
