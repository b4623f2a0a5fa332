"""A small asyncio SNMP client on pysnmp 7 (`pysnmp.hlapi.v3arch.asyncio`).

What the poller needs and nothing more: GET of many objects (split into
requests of at most `max_varbinds`), GETBULK walks of table columns, GETNEXT to
test that a subtree exists; SNMPv2c and SNMPv3 (USM: noAuthNoPriv, authNoPriv,
authPriv with MD5/SHA/SHA-2 and DES/AES). pysnmp's error indications are
translated here, at the boundary, into `SnmpError`s whose message tells the
operator what to check (a wrong auth key says so, it does not time out), so
callers never see pysnmp types. Values come back as plain Python: int, str,
or None for noSuchObject / noSuchInstance / endOfMibView (`get` says which,
where the caller asks: `no_value`).

SNMPv3 sessions survive an agent restart. pysnmp learns the agent's engine ID
(and boots/time) once and never again: after the agent comes back with a new
engine ID it drops the agent's reports and times out. So when a session that
worked fails in a way a restart explains (a report instead of an answer:
unknown engine ID or user, not in time window, decryption or digest error, or a
timeout although the agent sent something), the client throws its engine away
(cached engine ID, boots, time, localized keys), discovers the agent afresh and
repeats the request once; the log names the cause ("engine ID changed ...:
rediscovered"). Only when the fresh session fails too do the keys get the blame.
No request is ever sent just to explain an error: whether the agent answered at
all comes from counting its datagrams, so a timeout costs timeout x tries and no more.

MIB lookups are off (`lookupMib=False`): OIDs are numeric and resolving them
costs CPU for nothing. Every engine (`snmp_engine()`) resolves its requests' OIDs through
one view for the process: pysnmp otherwise gives each engine a MIB compiler on its first
request (pysmi builds its parser: 0.4 s of CPU, more on a busy machine), inside the first
poll's budget, for every SNMPv3 device and again after each rediscovery. The shared view
is made once, when the first engine is, before any poll runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch import asyncio as hl
from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.smi.builder import MibBuilder
from pysnmp.smi.compiler import add_mib_compiler
from pysnmp.smi.view import MibViewController

from puewatch.collector.snmp.device import SnmpDevice

Value = int | str | None
Answer = tuple[object, object, object, Sequence]  # pysnmp's (errorIndication, errorStatus, errorIndex, varBinds)

log = logging.getLogger("puewatch.collector.snmp")

_VIEW: MibViewController | None = None


def snmp_engine() -> hl.SnmpEngine:
    """A new pysnmp engine whose requests resolve their OIDs through the process's one view (see the
    module's docstring); the view and its MIB compiler are made with the first engine."""
    global _VIEW
    if _VIEW is None:
        view = MibViewController(MibBuilder())
        add_mib_compiler(view.mibBuilder, ifAvailable=True, ifNotAdded=True)
        _VIEW = view
    engine = hl.SnmpEngine()
    engine.cache["mibViewController"] = _VIEW
    return engine


# Failures of a session that worked which an agent restart explains (its engine ID,
# boots or time changed, so it no longer knows the keys localized to the old engine ID).
_RESTART_SIGNS = (
    errind.NotInTimeWindow, errind.UnknownEngineID, errind.UnknownUserName, errind.UnknownSecurityName,
    errind.DecryptionError, errind.WrongDigest,
)

_AUTH = {
    "none": hl.USM_AUTH_NONE,
    "MD5": hl.USM_AUTH_HMAC96_MD5,
    "SHA": hl.USM_AUTH_HMAC96_SHA,
    "SHA-224": hl.USM_AUTH_HMAC128_SHA224,
    "SHA-256": hl.USM_AUTH_HMAC192_SHA256,
    "SHA-384": hl.USM_AUTH_HMAC256_SHA384,
    "SHA-512": hl.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    "none": hl.USM_PRIV_NONE,
    "DES": hl.USM_PRIV_CBC56_DES,
    "AES": hl.USM_PRIV_CFB128_AES,
    "AES-128": hl.USM_PRIV_CFB128_AES,
    "AES-192": hl.USM_PRIV_CFB192_AES,
    "AES-256": hl.USM_PRIV_CFB256_AES,
}


class SnmpError(Exception):
    """An SNMP request failed; the message says why in words an operator can act on. `cause` is its
    kind (a key of `schema.SNMP_POLL_CAUSES`), which /metrics counts and the store records per poll."""

    cause = "error"


class SnmpTimeout(SnmpError):
    """No answer within timeout x (retries + 1)."""

    cause = "timeout"


class SnmpAuthError(SnmpError):
    """The agent refused the credentials (wrong key, unknown user, access denied)."""

    cause = "auth"


class Typed(str):
    """A value of an SNMP type that is never a meter's number, as text, with its type's name
    (`snmp_type`): TimeTicks (hundredths of a second), an IpAddress (dotted), an OBJECT IDENTIFIER
    (dotted), Opaque (hex). Text wherever text is read (a sysObjectID); `validate.number_of`
    refuses it as a number, whatever its text looks like (an IpAddress's octets 49.50.48.48 are
    the ASCII "1200", which read as 1,200 raw units)."""

    snmp_type: str

    def __new__(cls, text: str, snmp_type: str) -> "Typed":
        obj = super().__new__(cls, text)
        obj.snmp_type = snmp_type
        return obj


def convert(value: object) -> Value:
    """A pysnmp value as plain Python: int (INTEGER, Integer32, Gauge32, Unsigned32, Counter32/64),
    str (OCTET STRING as UTF-8 text), `Typed` text for the types that are no number of a meter (NULL
    included), None when absent."""
    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)):
        return None
    if isinstance(value, univ.Null):
        # An answer, but no value of any type (SNMPv2 answers an object it has not got with noSuchObject or
        # noSuchInstance): refused as not a number and counted, where as absent its row vanished from the walk
        # unsaid and a total took its fallback (found by the SNMP audit).
        return Typed("", "NULL")
    if isinstance(value, rfc1902.TimeTicks):
        return Typed(str(int(value)), "TimeTicks")
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return Typed(".".join(str(x) for x in value), "OBJECT IDENTIFIER")
    if isinstance(value, rfc1902.IpAddress):
        return Typed(".".join(str(b) for b in bytes(value)), "IpAddress")
    if isinstance(value, rfc1902.Opaque):
        return Typed(bytes(value).hex(), "Opaque")
    if isinstance(value, univ.OctetString):
        return bytes(value).decode("utf-8", "replace")
    return None


def no_value(value: object) -> str:
    """What an agent answered instead of a value (`convert` gave None), as SNMP names it: noSuchObject,
    noSuchInstance, endOfMibView, NULL, or the type it sent that is not a value here."""
    for kind, name in ((rfc1905.NoSuchObject, "noSuchObject"), (rfc1905.NoSuchInstance, "noSuchInstance"),
                       (rfc1905.EndOfMibView, "endOfMibView"), (univ.Null, "NULL")):
        if isinstance(value, kind):
            return name
    return f"a value of type {type(value).__name__}"


def _oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


class SnmpClient:
    """SNMP requests to one device; safe to use from one event loop, many requests in flight.

    `engine`: share one pysnmp engine between many SNMPv2c devices (one UDP
    socket). SNMPv3 devices get their own engine, because USM keys are
    per user name in an engine and two devices may use one name with
    different keys, and because a restarted agent means a new engine.
    """

    def __init__(self, device: SnmpDevice, engine: hl.SnmpEngine | None = None) -> None:
        self.device = device
        self._own_engine = engine is None or device.version == "3"
        self.engine = snmp_engine() if self._own_engine else engine
        self._target: hl.UdpTransportTarget | None = None
        self._addr_name: str | None = None
        self._varbinds: dict[tuple[str, ...], list] = {}
        self._context = hl.ContextData(contextName=device.context) if device.context else hl.ContextData()
        if device.version == "2c":
            self._auth: hl.CommunityData | hl.UsmUserData = hl.CommunityData(device.community, mpModel=1)
        else:
            level = device.security_level
            self._auth = hl.UsmUserData(
                device.user,
                authKey=device.auth_key or None,
                privKey=device.priv_key or None,
                authProtocol=_AUTH[device.auth_proto] if level != "noAuthNoPriv" else hl.USM_AUTH_NONE,
                privProtocol=_PRIV[device.priv_proto] if level == "authPriv" else hl.USM_PRIV_NONE,
            )
        # SNMPv3 session state: datagrams heard from the agent by this client's engine (to tell
        # "silent" from "answers, but not to this request"), the agent's engine ID as last seen
        # working, and engines replaced by a rediscovery, closed once no request uses them.
        self._heard = 0
        self._generation = 0
        self._in_flight = 0
        self._retired: list[hl.SnmpEngine] = []
        self.engine_id: bytes | None = None
        # The engine ID of the session a rediscovery replaced, until the fresh session first answers:
        # the rediscovery is noted then, whichever request or poll that is (the one that began it may
        # be cut off by its poll's budget mid-discovery).
        self._rediscovered_from: bytes | None = None
        self.rediscoveries = 0
        self.last_rediscovery: str | None = None  # what the last rediscovery found, for the log and probe

    @property
    def address(self) -> str:
        return self.device.address

    async def _transport(self) -> hl.UdpTransportTarget:
        if self._target is None:
            try:
                self._target = await hl.UdpTransportTarget.create(
                    (self.device.host, self.device.port), timeout=self.device.timeout_s, retries=self.device.retries
                )
            except Exception as exc:  # pysnmp raises PySnmpError for unresolvable names
                raise SnmpError(f"cannot resolve {self.device.host!r}: {exc}") from None
        return self._target

    async def _configure(self) -> hl.UdpTransportTarget:
        """The target, configured in the current engine (once per engine)."""
        target = await self._transport()
        if self._addr_name is None:
            self._addr_name, _ = LCD.configure(self.engine, self._auth, target, self._context.contextName)
            if self._own_engine:
                self.engine.transport_dispatcher.register_routing_callback(self._count_datagram)
        return target

    def _count_datagram(self, domain: object, address: object, message: object) -> None:
        """pysnmp's routing hook, called for every datagram this engine receives: count it, route as usual."""
        self._heard += 1
        return None

    # --- one request, with SNMPv3 rediscovery -------------------------------------------

    async def _request(self, send: Callable[[], Awaitable[Answer]], sent: Sequence[str]) -> Sequence:
        """Run `send` (which uses the current engine); on a v3 failure an agent restart explains,
        rediscover the agent and run it once more. Returns the var-binds; raises SnmpError."""
        self._in_flight += 1
        try:
            generation, heard = self._generation, self._heard
            ind, status, index, vbs = await send()
            if ind and self._restart_explains(ind, generation, heard):
                if generation == self._generation:
                    self._new_engine()
                heard = self._heard
                ind, status, index, vbs = await send()
            elif ind and generation != self._generation:
                # Another request of this poll already rediscovered: try on the fresh engine.
                heard = self._heard
                ind, status, index, vbs = await send()
            # A fresh session that fails is explained as one (the keys are blamed after saying what changed);
            # it is never rediscovered again before it has worked (engine_id stays None until then).
            await self._check(ind, status, index, sent, heard, self.engine_id or self._rediscovered_from)
            if self.device.version == "3" and self.engine_id is None:
                self.engine_id = self._peer_engine_id()
                if self._rediscovered_from is not None:
                    self._note_rediscovery(self._rediscovered_from)
            return vbs
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._retired:
                for engine in self._retired:
                    _close(engine)
                self._retired.clear()

    def _restart_explains(self, ind: object, generation: int, heard: int) -> bool:
        """A failure of a v3 session that a fresh engine's discovery may explain: of a kind an agent restart
        causes, in a session that worked; or silence from an agent this engine has heard before.

        An agent drops a request it cannot decrypt without a word (net-snmp: a priv key changed, e.g. at
        a restart), so to an engine that knows it, a wrong priv key is as silent as a device that went
        down, and was explained as one (found by the SNMP operator audit). A fresh engine tells them
        apart: its discovery is answered (the agent is up: the keys) or not (down). A device that went
        down costs one such try (the fresh engine has heard nothing); a wrong priv key, one a request."""
        if self.device.version != "3" or generation != self._generation:
            return False
        if isinstance(ind, errind.RequestTimedOut):
            # Heard during the request: answered something, not this (a restarted agent's report); heard
            # before it, and silent now: dropped, or down.
            return self._heard > heard or (heard > 0 and self._heard == heard)
        return self.engine_id is not None and isinstance(ind, _RESTART_SIGNS)

    def _new_engine(self) -> None:
        """Forget the agent's engine ID, boots, time and localized keys: a new engine discovers it afresh."""
        self._rediscovered_from = self.engine_id
        self.engine_id = None
        self._retired.append(self.engine)
        self.engine = snmp_engine()
        self._addr_name = None
        self._target = None
        self._heard = 0
        self._generation += 1

    def _peer_engine_id(self) -> bytes | None:
        """The agent's engine ID as this engine discovered it (None before any answer)."""
        if self._target is None:
            return None
        try:
            mp = self.engine.message_processing_subsystems[3]
            found = mp.get_peer_engine_info(*self._target.get_transport_info())[0]
        except Exception:  # noqa: BLE001 (pysnmp internals moved: no engine ID, no rediscovery hint)
            return None
        return bytes(found) if found is not None else None

    def _note_rediscovery(self, old_id: bytes) -> None:
        """The fresh session answered: count the rediscovery and log what changed."""
        new_id = self.engine_id
        self._rediscovered_from = None
        self.rediscoveries += 1
        if old_id is not None and new_id is not None and old_id != new_id:
            what = f"engine ID changed from 0x{old_id.hex()} to 0x{new_id.hex()} (device restarted or replaced)"
        else:
            what = "engine boots/time changed (device restarted)"
        self.last_rediscovery = what
        # Named by the device (several devices may share an address's agent: the line named none; SNMP audit).
        log.warning("device %s (%s): SNMPv3 %s: rediscovered, reading again", self.device.name, self.address, what)

    async def _check(
        self, error_indication: object, error_status: object, error_index: object, sent: Sequence[str],
        heard: int = 0, old_id: bytes | None = None,
    ) -> None:
        if error_indication:
            raise self._explain(error_indication, heard, old_id)
        status = int(error_status) if error_status else 0
        if status:
            name = error_status.prettyPrint() if hasattr(error_status, "prettyPrint") else str(error_status)
            idx = int(error_index or 0)
            where = f" at {sent[idx - 1]}" if 0 < idx <= len(sent) else ""
            if name in ("authorizationError", "noAccess"):
                raise SnmpAuthError(
                    f"{self.address}: access denied ({name}): this community/user may not read the objects{where}"
                )
            raise SnmpError(f"{self.address}: the agent answered {name}{where}")

    def _explain(self, ind: object, heard: int, old_id: bytes | None) -> SnmpError:
        d = self.device
        # After a rediscovery, say so: the keys are blamed only for what a fresh session got.
        new_id = self._peer_engine_id() if d.version == "3" else None
        changed = old_id is not None and new_id is not None and new_id != old_id
        after = (
            f"engine ID changed from 0x{old_id.hex()} to 0x{new_id.hex()} (device restarted or replaced), rediscovered; "
            if changed else ""
        )
        if isinstance(ind, errind.RequestTimedOut):
            tries = d.retries + 1
            base = f"{self.address}: no response within {d.timeout_s:g} s ({tries} {'try' if tries == 1 else 'tries'})"
            if d.version == "3" and self._heard > heard:
                # The agent sent something (engine discovery, a report) but no answer to the request:
                # net-snmp drops requests it cannot decrypt, and requests for a context it does not
                # have (snmpget -n answers nothing either).
                context = (f", or no context {d.context!r} on the agent (net-snmp drops requests for a context it "
                           "has not got)") if d.context else ""
                if d.security_level == "authPriv":
                    return SnmpAuthError(
                        f"{self.address}: {after}the agent answers but not to encrypted requests: "
                        f"decryption failed (wrong priv key or priv protocol {d.priv_proto}?){context}"
                    )
                return SnmpAuthError(f"{self.address}: {after}the agent answers but not to requests of user "
                                     f"{d.user!r}{context}")
            hint = "device down or unreachable, or wrong community?" if d.version == "2c" else "device down or unreachable?"
            return SnmpTimeout(f"{base}: {hint}")
        if isinstance(ind, errind.WrongDigest):
            return SnmpAuthError(
                f"{self.address}: {after}authentication failed (wrong auth key or auth protocol {d.auth_proto}?)"
            )
        if isinstance(ind, (errind.UnknownUserName, errind.UnknownSecurityName)):
            return SnmpAuthError(f"{self.address}: {after}unknown SNMPv3 user {d.user!r}")
        if isinstance(ind, errind.DecryptionError):
            return SnmpAuthError(f"{self.address}: {after}decryption failed (wrong priv key or priv protocol {d.priv_proto}?)")
        if isinstance(ind, errind.UnsupportedSecurityLevel):
            return SnmpAuthError(
                f"{self.address}: the agent does not support security level {d.security_level} for user {d.user!r}"
            )
        if isinstance(ind, errind.NotInTimeWindow):
            return SnmpAuthError(
                f"{self.address}: SNMPv3 message not in time window even after rediscovery "
                "(the agent's clock or boot counter keeps changing?)"
            )
        text = getattr(ind, "prettyPrint", lambda: str(ind))()
        return SnmpError(f"{self.address}: {text}")

    # --- requests ---------------------------------------------------------------------------

    async def get(self, oids: Sequence[str], answered: dict[str, str] | None = None) -> list[Value]:
        """Values of `oids` in order (None where the object is absent); requests of at most max_varbinds run concurrently.

        `answered`, when given, gets what the agent said instead of a value for each OID whose value is
        None (`no_value`: "noSuchInstance", ...), so that a missing value can be explained.
        """
        if not oids:
            return []
        n = self.device.max_varbinds
        chunks = [list(oids[i : i + n]) for i in range(0, len(oids), n)]
        if len(chunks) == 1:
            return await self._get_chunk(chunks[0], answered)
        parts = await asyncio.gather(*(self._get_chunk(c, answered) for c in chunks))
        return [v for part in parts for v in part]

    async def _get_chunk(self, oids: list[str], answered: dict[str, str] | None = None) -> list[Value]:
        # The hot path of every poll. It talks to pysnmp's command generator
        # directly with prebuilt (OID, Null) var-binds: hlapi's get_cmd resolves
        # every OID through the MIB view on each call, which costs more CPU than
        # encoding and decoding the messages.
        key = tuple(oids)
        vbs_out = self._varbinds.get(key)
        if vbs_out is None:
            vbs_out = [(rfc1902.ObjectName(o), rfc1902.Null("")) for o in oids]
            if len(self._varbinds) < 64:
                self._varbinds[key] = vbs_out

        async def send() -> Answer:
            await self._configure()
            future = asyncio.get_running_loop().create_future()

            def done(engine, handle, ind, status, index, vbs, ctx) -> None:
                if not future.done():
                    future.set_result((ind, status, index, vbs))

            cmdgen.GetCommandGenerator().send_varbinds(
                self.engine, self._addr_name, self._context.contextEngineId, self._context.contextName, vbs_out, done
            )
            return await future

        vbs = await self._request(send, oids)
        if len(vbs) != len(oids):
            raise SnmpError(f"{self.address}: asked for {len(oids)} objects, the agent answered {len(vbs)}")
        values = [convert(v) for _, v in vbs]
        if answered is not None:
            for oid, (_, v), x in zip(oids, vbs, values):
                if x is None:
                    answered[oid] = no_value(v)
        return values

    async def get_next(self, oid: str) -> tuple[str, Value] | None:
        """The first object after `oid` (GETNEXT), or None at the end of the MIB view."""

        async def send() -> Answer:
            target = await self._configure()
            return await hl.next_cmd(
                self.engine, self._auth, target, self._context, hl.ObjectType(hl.ObjectIdentity(oid)), lookupMib=False
            )

        vbs = await self._request(send, [oid])
        if not vbs:
            return None
        name, value = vbs[0]
        if isinstance(value, rfc1905.EndOfMibView):
            return None
        return ".".join(str(x) for x in name), convert(value)

    async def exists(self, subtree: str) -> bool:
        """True if any object lies in `subtree` (one GETNEXT)."""
        nxt = await self.get_next(subtree)
        return nxt is not None and (nxt[0] == subtree or nxt[0].startswith(subtree + "."))

    async def walk(self, column: str, max_rows: int = 100_000) -> list[tuple[str, Value]]:
        """Every (index, value) under `column`, in OID order, with GETBULK (max_repetitions per request).

        `index` is the OID suffix after `column` (dotted). Stops at the end of
        the column; an agent that returns non-increasing OIDs is an error (it
        would loop forever).
        """
        prefix = _oid_tuple(column)
        n = len(prefix)
        rows: list[tuple[str, Value]] = []
        cursor = prefix
        while True:
            start = ".".join(map(str, cursor))

            async def send(start: str = start) -> Answer:
                target = await self._configure()
                return await hl.bulk_cmd(
                    self.engine, self._auth, target, self._context, 0, self.device.max_repetitions,
                    hl.ObjectType(hl.ObjectIdentity(start)), lookupMib=False,
                )

            vbs = await self._request(send, [start])
            if not vbs:
                return rows
            for name, value in vbs:
                oid = tuple(name)
                if isinstance(value, rfc1905.EndOfMibView) or oid[:n] != prefix or len(oid) == n:
                    return rows
                if oid <= cursor:
                    raise SnmpError(f"{self.address}: the agent returned OIDs out of order while walking {column}")
                rows.append((".".join(map(str, oid[n:])), convert(value)))
                cursor = oid
                if len(rows) >= max_rows:
                    raise SnmpError(f"{self.address}: more than {max_rows} rows under {column}")

    def close(self) -> None:
        """Release the engine's socket if this client owns its engine (and any engine a rediscovery replaced)."""
        if self._own_engine:
            _close(self.engine)
        for engine in self._retired:
            _close(engine)
        self._retired.clear()


def _close(engine: hl.SnmpEngine) -> None:
    try:
        engine.close_dispatcher()
    except Exception:  # noqa: BLE001 (closing twice or before any request: nothing to release)
        pass
