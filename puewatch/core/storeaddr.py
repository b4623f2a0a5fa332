"""Store addresses, read one way everywhere (`demo --store`, `report`/`export --store`).

An address is a file path or `sqlite:PATH` (`sqlite:///abs/path` too): the embedded SQLite
store; or `http[s]://[user:password@]host:port[/DATABASE]`: an InfluxDB through its v1 API
(1.x, or 2.x/3.x v1 compatibility). Where the database is not in the address, the caller
takes it from elsewhere (`--database`, the config) or requires it.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from puewatch.errors import UserError
from puewatch.redact import redact_url

__all__ = ["StoreAddress", "parse_store_address"]

FORMS = "a file path, sqlite:PATH or http[s]://[user:password@]host:port/DATABASE (InfluxDB v1 API)"


@dataclass
class StoreAddress:
    """Where a store is: the embedded SQLite file, or an InfluxDB reached through its v1 API."""

    kind: str  # "embedded" or "influx1"
    path: Path | None = None
    url: str = ""  # scheme://host[:port], no path, no credentials
    database: str = ""
    user: str = ""
    password: str = ""

    def describe(self) -> str:
        return f"embedded {self.path}" if self.kind == "embedded" else f"InfluxDB {self.url} database {self.database}"


def parse_store_address(value: str, option: str = "--store", *, need_database: bool = True) -> StoreAddress:
    """`value` as a `StoreAddress`; a `UserError` naming `option` and the accepted forms when it is none of them."""
    text = value.strip()
    if text.startswith("sqlite:"):
        rest = text[len("sqlite:"):]
        if rest.startswith("//"):
            rest = rest[2:]
        if not rest:
            raise UserError(f"{option} sqlite:PATH needs a file path")
        return StoreAddress("embedded", path=Path(rest).resolve())
    if "://" not in text:
        if not text:
            raise UserError(f"{option} is empty: use {FORMS}")
        return StoreAddress("embedded", path=Path(text).resolve())
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https"):
        raise UserError(f"{option} {redact_url(value)!r}: use {FORMS}")
    try:
        port = u.port
    except ValueError:
        raise UserError(f"{option} {redact_url(value)!r}: bad port; expected http[s]://[user:password@]host:port/DATABASE") from None
    database = u.path.strip("/")
    if not u.hostname or "/" in database or (need_database and not database) or u.query or u.fragment:
        raise UserError(f"{option} {redact_url(value)!r}: expected http[s]://[user:password@]host:port/DATABASE")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return StoreAddress(
        "influx1",
        url=f"{u.scheme}://{host}" + (f":{port}" if port else ""),
        database=urllib.parse.unquote(database),
        user=urllib.parse.unquote(u.username or ""),
        password=urllib.parse.unquote(u.password or ""),
    )
