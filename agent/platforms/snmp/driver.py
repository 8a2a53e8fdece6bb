"""Owns the SNMP driver: pysnmp 7 (v3 authPriv, v2c only if asked), on the shared SNMP transport
(`agent.drivers.snmp`: one private loop, engines shared between drivers).
Imports the shared transports (contract, trail, SNMP engines), the capability types, this folder's
parser and IF-MIB columns, audit, secrets and errors; must not import netmiko, paramiko, the
engine or the CLI; pysnmp errors stop here."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    Integer,
    ObjectIdentity,
    ObjectType,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    set_cmd,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACSHAAuthProtocol,
)

from agent.audit import store_evidence
from agent.drivers import snmp as transport
from agent.drivers import trail
from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    InterfaceState,
    Target,
    Timeouts,
    Via,
    mismatches,
)
from agent.drivers.snmp import _identity, _Slot, _var
from agent.errors import AuthError, ConfigError, DeviceError, DeviceTimeout, SnmpError
from agent.platforms.capabilities import IfCounters
from agent.platforms.snmp import parse
from agent.platforms.snmp.mib import (
    HC_COUNTERS,
    IF_ADMIN,
    IF_COUNTERS,
    IF_DESCR,
    IF_HC_IN,
    IF_HC_OUT,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OPER,
    IF_OUT_OCTETS,
    SYS_UPTIME,
)
from agent.secrets import resolve

T = TypeVar("T")

_GET_CHUNK = 40  # varbinds per GET: keeps each response well inside one UDP datagram

_AUTH = {
    "sha": usmHMACSHAAuthProtocol,
    "sha256": usmHMAC192SHA256AuthProtocol,
    "sha512": usmHMAC384SHA512AuthProtocol,
}
_PRIV = {
    "aes": usmAesCfb128Protocol,
    "aes192": usmAesCfb192Protocol,
    "aes256": usmAesCfb256Protocol,
}
_AUTH_FAILURES = frozenset(
    {
        "UnknownUserName",
        "WrongDigest",
        "UnknownSecurityName",
        "UnsupportedSecurityLevel",
        "AuthenticationError",
        "AuthenticationFailure",
        "DecryptionError",
    }
)
_NO_VALUE = frozenset({"NoSuchObject", "NoSuchInstance", "EndOfMibView"})


class SnmpDriver:
    """Interfaces of any device running an SNMP agent; changes are ifAdminStatus SETs."""

    via: Via = "snmp"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        if target.device.snmp is None:
            raise ConfigError(f"{target.name}: no SNMP settings in the inventory")
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._slot: _Slot | None = None
        self._auth: Any = None
        self._udp: Any = None
        self._index: dict[str, int] = {}

    # -- session ---------------------------------------------------------------------------------

    def _credentials(self) -> Any:
        snmp = self.target.device.snmp
        assert snmp is not None
        base, name = self.target.base_dir, self.target.name
        if snmp.version == "v2c":
            if snmp.community is None:
                raise ConfigError(f"{name}: SNMP v2c needs a community reference")
            community = resolve(snmp.community, base_dir=base, what=f"{name}: snmp.community")
            return CommunityData(community, mpModel=1)  # noqa: S508 - the inventory asked for v2c
        if snmp.user is None or snmp.auth is None or snmp.priv is None:
            raise ConfigError(
                f"{name}: SNMPv3 needs user, auth and priv (authPriv); "
                "Cordon does not send SETs without privacy"
            )
        return UsmUserData(
            snmp.user,
            resolve(snmp.auth, base_dir=base, what=f"{name}: snmp.auth"),
            resolve(snmp.priv, base_dir=base, what=f"{name}: snmp.priv"),
            authProtocol=_AUTH[snmp.auth_protocol],
            privProtocol=_PRIV[snmp.priv_protocol],
        )

    def connect(self) -> None:
        if self.is_open():
            return
        auth = self._credentials()
        name, creds = _identity(auth)
        snmp = self.target.device.snmp
        assert snmp is not None

        async def setup() -> tuple[_Slot, Any]:
            udp = await UdpTransportTarget.create(
                (self.target.address, snmp.port),
                timeout=self.timeouts.snmp,
                retries=self.timeouts.snmp_retries,
            )
            return transport._engines.acquire(name, creds), udp

        # if we stop waiting and the setup finishes anyway, its engine slot is given back
        self._slot, self._udp = self._call(
            "connect", setup(), abandoned=lambda got: transport._engines.release(got[0])
        )
        self._auth = auth
        try:
            self._get("connect", [SYS_UPTIME])
        except DeviceError:
            self.close()
            raise

    def is_open(self) -> bool:
        return self._slot is not None

    def close(self) -> None:
        """Leave the shared engine (closed with its last driver); other drivers are untouched."""
        slot, self._slot = self._slot, None
        self._auth = self._udp = None
        if slot is not None:

            async def leave() -> None:
                transport._engines.release(slot)

            with contextlib.suppress(Exception):  # closing must never raise
                transport._shared_loop().run(leave(), 5.0)

    def ping(self) -> None:
        self._get("ping", [SYS_UPTIME])

    # -- reads -----------------------------------------------------------------------------------

    def facts(self) -> Facts:
        ifs = self._walk_interfaces("facts")
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=ifs,
            config=admin_text(ifs),
        )

    def backup(self) -> Backup:
        text = admin_text(self._walk_interfaces("backup"))
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
        )

    def interface_index(self, name: str, operation: str = "lookup") -> int:
        """The ifIndex of interface `name` (ifDescr or ifName), walking the table if needed."""
        if name not in self._index:
            self._walk_interfaces(operation)
        if name not in self._index:
            raise SnmpError(self.target.name, operation, f"no interface {name!r} in ifTable")
        return self._index[name]

    def interface_counters(self, interfaces: Sequence[str]) -> dict[str, IfCounters]:
        """Traffic counters of each named interface (ifName or ifDescr): the 64-bit ifHC*
        columns of ifXTable, or the 32-bit ifTable ones for an interface the agent gives no
        ifXTable row. One GET per 40 values; an unknown name raises SnmpError.

        The agent may cache its tables (net-snmp: a few seconds), so a read right after traffic
        can lag behind the kernel's counters; poll for growth."""
        names = list(dict.fromkeys(interfaces))
        if not names:
            return {}
        index = {n: self.interface_index(n, "counters") for n in names}
        hc = self._get_many("counters", [f"{c}.{index[n]}" for n in names for c in HC_COUNTERS])
        legacy_names = [n for n in names if _missing(hc, HC_COUNTERS, index[n])]
        legacy = self._get_many(
            "counters", [f"{c}.{index[n]}" for n in legacy_names for c in IF_COUNTERS]
        )
        out: dict[str, IfCounters] = {}
        for n in names:
            values, cols = (legacy, IF_COUNTERS) if n in legacy_names else (hc, HC_COUNTERS)
            if _missing(values, cols, index[n]):
                raise SnmpError(
                    self.target.name, "counters", f"no traffic counters for interface {n!r}"
                )
            counts = [int(values[f"{c}.{index[n]}"]) for c in cols]
            out[n] = IfCounters(*counts)
        return out

    def _get_many(self, operation: str, oids: Sequence[str]) -> dict[str, Any]:
        """GET in chunks; a value the agent does not have comes back as None."""
        found: dict[str, Any] = {}
        for at in range(0, len(oids), _GET_CHUNK):
            found.update(self._get(operation, oids[at : at + _GET_CHUNK], allow_missing=True))
        return found

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        names = sorted(set(expect.admin_up) | set(expect.oper_up))

        def read() -> tuple[Facts, list[str]]:
            if expect.needs_config or not names:
                facts = self.facts()
            else:
                index = {n: self.interface_index(n, "verify") for n in names}
                oids = [f"{col}.{index[n]}" for n in names for col in (IF_ADMIN, IF_OPER)]
                values = self._get("verify", oids)
                ifs = tuple(
                    InterfaceState(
                        name=n,
                        admin_up=values[f"{IF_ADMIN}.{index[n]}"] == 1,
                        oper_up=values[f"{IF_OPER}.{index[n]}"] == 1,
                        index=index[n],
                    )
                    for n in names
                )
                facts = Facts(self.target.name, self.target.device.platform, self.via, ifs)
            return facts, mismatches(facts, expect)

        return trail.verify_loop(
            self.target,
            via=self.via,
            action=action,
            read=read,
            timeout=self.timeouts.settle if timeout is None else timeout,
            interval=0.25,
        )

    # -- change ----------------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> ApplyResult:
        commands = tuple(c.strip() for c in changes.commands if c.strip())
        try:
            wanted = parse.parse_snmp_changes(commands)
        except ValueError as exc:
            raise DeviceError(self.target.name, "apply", f"refused before sending: {exc}") from None
        t0 = time.monotonic()
        try:
            binds = [
                (f"{IF_ADMIN}.{self.interface_index(n, 'apply')}", 1 if up else 2)
                for n, up in wanted
            ]
            self._set("apply", binds)
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        output = "\n".join(f"SET {oid} = {value}: noError" for oid, value in binds)
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=commands, output=output, started=t0
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _limit(self) -> float:
        return self.timeouts.snmp * (self.timeouts.snmp_retries + 1) + 2.0

    def _call(
        self,
        operation: str,
        coro: Coroutine[Any, Any, T],
        abandoned: Callable[[T], None] | None = None,
    ) -> T:
        try:
            return transport._shared_loop().run(coro, self._limit(), abandoned)
        except TimeoutError:
            raise DeviceTimeout(
                self.target.name, operation, f"SNMP call did not finish in {self._limit():g} s"
            ) from None

    def _check(
        self, operation: str, result: tuple[Any, Any, Any, Any], *, allow_missing: bool = False
    ) -> Sequence[Any]:
        indication, status, index, binds = result
        name = self.target.name
        if indication:
            kind = type(indication).__name__
            if kind == "RequestTimedOut":
                tries = self.timeouts.snmp_retries + 1
                raise DeviceTimeout(
                    name,
                    operation,
                    f"no SNMP answer from {self.target.address} "
                    f"({tries} tries of {self.timeouts.snmp:g} s)",
                    hint="check the management path; if the device answers SSH, check the "
                    "SNMPv3 privacy passphrase (a wrong one looks like silence)",
                )
            if kind in _AUTH_FAILURES:
                raise AuthError(name, operation, f"SNMP credentials refused ({kind})")
            raise SnmpError(name, operation, f"SNMP error: {indication}")
        if status and int(status) != 0:
            where = ""
            if index and 0 < int(index) <= len(binds):
                where = f" at {binds[int(index) - 1][0]}"
            raise SnmpError(name, operation, f"{status.prettyPrint()}{where}")
        for oid, value in binds:
            if type(value).__name__ in _NO_VALUE and operation != "walk" and not allow_missing:
                raise SnmpError(name, operation, f"noSuchName: {oid} ({type(value).__name__})")
        return list(binds)

    def _session(self, operation: str) -> tuple[_Slot, Any, Any]:
        slot, auth, udp = self._slot, self._auth, self._udp
        if slot is None:
            raise SnmpError(self.target.name, operation, "the SNMP session is closed")
        return slot, auth, udp

    def _request(
        self, operation: str, command: Callable[..., Any], oids: Sequence[str], *head: int
    ) -> tuple[Any, Any, Any, Any]:
        """A GET (or GETBULK with its two `head` numbers) of value-less `oids`, built on the loop
        thread from the resolved-OID cache."""
        slot, auth, udp = self._session(operation)

        async def send() -> tuple[Any, Any, Any, Any]:
            varbinds = [_var(o) for o in oids]
            result: tuple[Any, Any, Any, Any] = await command(
                slot.engine, auth, udp, ContextData(), *head, *varbinds, lookupMib=False
            )
            return result

        return self._call(operation, send())

    def get(self, oids: Sequence[str]) -> dict[str, Any]:
        """GET numeric OIDs -> {oid: value}; a missing one raises SnmpError (noSuchName)."""
        return self._get("get", oids)

    def set(self, binds: Sequence[tuple[str, int]]) -> None:
        """SET integer values in one PDU (all or nothing, per SNMP); errors name the OID."""
        self._set("set", binds)

    def _get(
        self, operation: str, oids: Sequence[str], *, allow_missing: bool = False
    ) -> dict[str, Any]:
        if operation != "connect":
            self.connect()
        binds = self._check(
            operation, self._request(operation, get_cmd, oids), allow_missing=allow_missing
        )
        return {str(oid): _value(v) for oid, v in binds}

    def _set(self, operation: str, binds: Sequence[tuple[str, int]]) -> None:
        self.connect()
        slot, auth, udp = self._session(operation)

        async def send() -> Any:
            return await set_cmd(
                slot.engine,
                auth,
                udp,
                ContextData(),
                *(ObjectType(ObjectIdentity(oid), Integer(v)) for oid, v in binds),
                lookupMib=False,
            )

        self._check(operation, self._call(operation, send()))

    def walk(self, columns: Sequence[str], operation: str = "walk") -> dict[str, dict[int, Any]]:
        """Column OID -> {row index: value} for each column (bulk requests, all columns at once).

        Columns the agent does not implement come back empty."""
        self.connect()
        found: dict[str, dict[int, Any]] = {c: {} for c in columns}
        cursor = {c: c for c in columns}
        pending = list(columns)
        while pending:
            result = self._request(operation, bulk_cmd, [cursor[c] for c in pending], 0, 25)
            binds = self._check("walk", result)
            if not binds:
                break
            done: set[str] = set()
            for i, (oid, value) in enumerate(binds):
                col = pending[i % len(pending)]
                if col in done:
                    continue
                text = str(oid)
                if type(value).__name__ in _NO_VALUE or not text.startswith(col + "."):
                    done.add(col)
                    continue
                suffix = text[len(col) + 1 :]
                if suffix.isdigit():
                    found[col][int(suffix)] = _value(value)
                cursor[col] = text
            pending = [c for c in pending if c not in done]
        return found

    def _walk_interfaces(self, operation: str) -> tuple[InterfaceState, ...]:
        cols = self.walk(
            [
                IF_DESCR,
                IF_ADMIN,
                IF_OPER,
                IF_IN_OCTETS,
                IF_OUT_OCTETS,
                IF_NAME,
                IF_HC_IN,
                IF_HC_OUT,
            ],
            operation,
        )
        ifs = interfaces_from_columns(cols)
        index: dict[str, int] = {}
        for i in ifs:
            assert i.index is not None
            index[i.name] = i.index
            alias = cols[IF_DESCR].get(i.index)
            if isinstance(alias, str):
                index.setdefault(alias, i.index)
        self._index = index
        return ifs


def _missing(values: Mapping[str, Any], columns: Sequence[str], index: int) -> bool:
    """Whether any of `columns` has no integer value for row `index` in `values`."""
    return any(not isinstance(values.get(f"{c}.{index}"), int) for c in columns)


def _value(value: Any) -> Any:
    kind = type(value).__name__
    if kind in ("OctetString", "DisplayString"):
        return value.asOctets().decode("utf-8", "replace")
    if kind in _NO_VALUE:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return value.prettyPrint()


def interfaces_from_columns(cols: Mapping[str, Mapping[int, Any]]) -> tuple[InterfaceState, ...]:
    """InterfaceStates from walked ifTable/ifXTable columns (pure; ifName preferred as the name,
    64-bit counters preferred to 32-bit ones)."""
    out = []
    for idx in sorted(set(cols.get(IF_DESCR, {})) | set(cols.get(IF_ADMIN, {}))):
        name = cols.get(IF_NAME, {}).get(idx) or cols.get(IF_DESCR, {}).get(idx) or f"if{idx}"
        admin = cols.get(IF_ADMIN, {}).get(idx)
        oper = cols.get(IF_OPER, {}).get(idx)
        hc_in, hc_out = cols.get(IF_HC_IN, {}).get(idx), cols.get(IF_HC_OUT, {}).get(idx)
        out.append(
            InterfaceState(
                name=str(name),
                admin_up=admin == 1,
                oper_up=None if oper is None else oper == 1,
                index=idx,
                in_octets=hc_in if hc_in is not None else cols.get(IF_IN_OCTETS, {}).get(idx),
                out_octets=hc_out if hc_out is not None else cols.get(IF_OUT_OCTETS, {}).get(idx),
            )
        )
    return tuple(out)


def admin_text(interfaces: Sequence[InterfaceState]) -> str:
    """The SNMP-visible configuration: one `ifAdminStatus <name> up|down` line per interface
    (the same syntax as an SNMP change set, so a backup can be re-applied)."""
    return "".join(f"ifAdminStatus {i.name} {'up' if i.admin_up else 'down'}\n" for i in interfaces)
