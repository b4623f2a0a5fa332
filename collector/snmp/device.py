"""Configuration of one SNMP meter (a PDU, UPS, switch...), to embed in the collector's config.

`SnmpDevice` is a `puewatch.config` model: as a `[[snmp.devices]]` table it is
validated with errors naming the key, and its documentation lands in the
generated configuration reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from puewatch.collector.snmp.profiles import ENERGY_QUANTITIES, QUANTITY_UNITS, check_oid, check_range
from puewatch.config import setting

AUTH_PROTOCOLS = ("none", "MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("none", "DES", "AES", "AES-128", "AES-192", "AES-256")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


@dataclass
class GenericOid:
    """One OID of a device that uses the `generic` profile."""

    name: str = setting(min=1, doc="Reading name, e.g. `total_active_power` or `feed_a_energy`.")
    oid: str = setting(min=1, doc="Numeric OID of the object instance (e.g. `1.3.6.1.4.1.99999.1.2.0`).")
    quantity: str = setting(choices=tuple(QUANTITY_UNITS), doc="What it measures; the value is in its unit (W, Wh, VA ...).")
    scale: float = setting(1.0, min=0.0, min_exclusive=True, doc="value = raw x scale, in the quantity's unit (0.1 kWh registers: 100).")
    kind: str = setting("gauge", choices=("gauge", "register"), doc="gauge: instantaneous; register: cumulative (energy).")
    modulus_raw: float | None = setting(None, min=1.0, doc="Where a register wraps, in raw units (4294967296 for Unsigned32).")
    missing_values: list[int] = setting(default_factory=list, doc="Raw values meaning 'not supported' (e.g. -1; a "
                                        "negative one also as its bits read unsigned: 4294967295 for -1 in a Gauge32).")
    missing_below: float | None = setting(None, doc="Raw values below this mean 'not available'.")
    raw_range: list[float] = setting(
        default_factory=list, doc="The object's SYNTAX range `[min, max]` in raw units; values outside it are refused."
    )
    total: bool = setting(False, doc="Part of the device total of its quantity (active_power or active_energy).")

    def check(self) -> list[tuple[str, str]]:
        problem = check_oid(self.oid)
        if problem:
            return [("oid", problem)]
        if self.modulus_raw is not None and self.kind != "register":
            return [("modulus_raw", "only a register (kind = \"register\") wraps")]
        if self.quantity in ENERGY_QUANTITIES and self.kind != "register":
            # A gauge is read as a rate and integrated: its Wh would count as W (SNMP operator audit).
            return [("kind", f"an {self.quantity} reading counts up: kind = \"register\" (a gauge is integrated as a rate)")]
        problem = check_range(self.raw_range)
        if problem:
            return [("raw_range", problem)]
        if self.total and self.quantity not in ("active_power", "active_energy"):
            return [("total", "only active_power and active_energy readings make up a device total")]
        return []


@dataclass
class SnmpDevice:
    """An SNMP meter: address, credentials, profile and schedule."""

    name: str = setting(min=1, doc="Device name: the `device` of its readings (letters, digits, `_.:-`).")
    host: str = setting(min=1, doc="IP address or host name of the device's SNMP agent.")
    port: int = setting(161, min=1, max=65535, doc="UDP port of the agent.")
    version: str = setting("2c", choices=("2c", "3"), doc="SNMP version.")
    community: str = setting("public", secret=True, doc="SNMPv2c community.")
    user: str = setting("", doc="SNMPv3 user name (USM).")
    auth_proto: str = setting("SHA", choices=AUTH_PROTOCOLS, doc="SNMPv3 authentication protocol (SHA = HMAC-SHA-96).")
    auth_key: str = setting("", secret=True, doc="SNMPv3 authentication pass phrase (8 characters or more); empty: noAuthNoPriv.")
    priv_proto: str = setting("AES", choices=PRIV_PROTOCOLS, doc="SNMPv3 privacy protocol (AES = AES-128 CFB).")
    priv_key: str = setting("", secret=True, doc="SNMPv3 privacy pass phrase (8 characters or more); empty: authNoPriv.")
    context: str = setting("", doc="SNMPv3 context name (empty: the default context).")
    profile: str = setting("", doc="Meter profile name; empty: chosen from the device's sysObjectID.")
    interval_s: float = setting(10.0, min=0.1, max=86400.0, doc="Polling period (fixed rate: polls start on a grid, never drift).")
    timeout_s: float = setting(2.0, min=0.05, max=60.0, doc="Timeout of one SNMP request.")
    retries: int = setting(1, min=0, max=10, doc="Retries of a request that timed out.")
    max_varbinds: int = setting(32, min=1, max=128, doc="Most objects in one GET request (larger polls are split).")
    max_repetitions: int = setting(25, min=1, max=200, doc="GETBULK max-repetitions when walking a table.")
    rediscover_s: float = setting(3600.0, min=0.0, doc="Walk the tables again this often to find new rows (0: only on reconnect).")
    oids: list[GenericOid] = setting(default_factory=list, doc="The OIDs to read with the `generic` profile.")

    def check(self) -> list[tuple[str, str]]:
        if not _NAME_RE.match(self.name):
            return [("name", f"must be letters, digits and '_.:-', got {self.name!r}")]
        if self.version == "2c":
            # Credentials of SNMPv3 on a v2c device were ignored, silently: the device was polled with the
            # community (found by the config audit).
            for key in ("user", "auth_key", "priv_key", "context"):
                if getattr(self, key):
                    return [(key, f'is an SNMPv3 setting, and this device has version = "2c" (it is polled with '
                                  f'its community): set version = "3" to use it, or remove it')]
        if self.version == "3":
            if not self.user:
                return [("user", "is required for SNMPv3")]
            if self.auth_key and self.auth_proto == "none":
                return [("auth_proto", "is 'none' but auth_key is set")]
            if self.auth_key and len(self.auth_key) < 8:
                return [("auth_key", "must be at least 8 characters (RFC 3414)")]
            if self.priv_key and not self.auth_key:
                return [("priv_key", "privacy needs authentication too: set auth_key")]
            if self.priv_key and self.priv_proto == "none":
                return [("priv_proto", "is 'none' but priv_key is set")]
            if self.priv_key and len(self.priv_key) < 8:
                return [("priv_key", "must be at least 8 characters (RFC 3414)")]
        if self.profile == "generic" and not self.oids:
            return [("oids", "the generic profile needs at least one OID")]
        if self.oids and self.profile != "generic":
            return [("oids", "are only read with profile = \"generic\"")]
        names = [o.name for o in self.oids]
        for i, n in enumerate(names):
            if n in names[:i]:
                return [(f"oids[{i}].name", f"duplicate reading name {n!r}")]
        worst = self.timeout_s * (self.retries + 1)
        if worst > self.interval_s:
            return [
                (
                    "timeout_s",
                    f"timeout_s x (retries + 1) = {worst:g} s is longer than interval_s ({self.interval_s:g} s): "
                    "a dead device would miss every poll",
                )
            ]
        return []

    @property
    def security_level(self) -> str:
        """noAuthNoPriv, authNoPriv or authPriv (SNMPv3), from the keys that are set."""
        if not self.auth_key:
            return "noAuthNoPriv"
        return "authPriv" if self.priv_key else "authNoPriv"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
