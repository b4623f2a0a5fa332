"""InfluxDB v2 write API (`/api/v2/write`) through the official `influxdb-client`.

One store for every server that speaks the v2 write API: InfluxDB 2.x (token, org,
bucket), InfluxDB 3.x (token, database as bucket; org ignored), InfluxDB 1.8+ (its
v2 compatibility endpoint: token "user:password", bucket "db/rp") and
VictoriaMetrics. Bodies arrive already encoded (ns line protocol from
`puewatch.lineprotocol` or the ingest), so the client's synchronous write API is
given the bytes as they are: no Point objects, no re-encoding, no client-side
batching thread (the StoreWriter in front of us already batches and retries).

The client's own retries are off: a failed write is reported at once as
`StoreUnavailable` (connection refused/reset, timeout, 5xx, 429) or `StoreRejected`
(any other 4xx, with the server's message), and the StoreWriter decides.
"""

from __future__ import annotations

import logging

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from puewatch.core.batch import Batch
from puewatch.redact import redact_text, redact_url

from .base import StoreRejected, StoreUnavailable

log = logging.getLogger("puewatch.collector.stores.influx2")

__all__ = ["Influx2Store"]


class Influx2Store:
    """`Store` over the InfluxDB v2 write API."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        gzip: bool = False,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        verify_ssl: bool = True,
        ssl_ca_cert: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.name = f"influx2 {redact_url(self.url)} org={org} bucket={bucket}"
        # (connect, read) timeouts in ms; retries=False: urllib3 raises on the first failure.
        self._client = InfluxDBClient(
            url=self.url,
            token=token,
            org=org,
            timeout=(int(connect_timeout_s * 1000), int(timeout_s * 1000)),
            enable_gzip=gzip,
            verify_ssl=verify_ssl,
            ssl_ca_cert=ssl_ca_cert,
            retries=False,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        if not body:
            return
        try:
            self._write.write(bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.NS)
        except ApiException as exc:
            status = exc.status or 0
            message = _message(exc)
            if status == 429 or status >= 500:
                raise StoreUnavailable(f"{self.name}: HTTP {status}: {message}") from None
            raise StoreRejected(f"{self.name}: HTTP {status}: {message}", status) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Connection refused/reset, DNS, TLS, timeouts: all urllib3 HTTPError subclasses.
            raise StoreUnavailable(f"{self.name}: {redact_text(_reason(exc))}") from None

    def write_batch(self, batch: Batch) -> None:
        """A typed batch, encoded to line protocol here: the wire is the only place it is text."""
        self.write(batch.to_line_protocol())

    def close(self) -> None:
        try:
            self._write.close()
        finally:
            self._client.close()


def _message(exc: ApiException) -> str:
    """The server's own words: the JSON `message` (InfluxDB 2.x/3.x), else the raw body, else the reason."""
    msg = getattr(exc, "message", None) or exc.body or exc.reason or ""
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return " ".join(str(msg).split())[:500]


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return " ".join(text.split())[:300]
