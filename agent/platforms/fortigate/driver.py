"""Owns the fortigate driver: the FortiOS REST API (`/api/v2/cmdb/...`, `/api/v2/monitor/...`)
with an API token (`Authorization: Bearer`, resolved from its `file:`/`env:` reference at use,
never logged) over the pinned connection of `agent.drivers.tls` (stdlib http.client: the
certificate is checked against its pin before a byte of a request is sent; httpx or
`fortigate-api` would open their own sockets and check CAs, not our pin, before we could look).
It converges Cordon's `cordon-` objects to a script (`render.script`), reads them back exactly,
reads policy hit counts, decides flows by FortiOS's own policy lookup (one GET per distinct
packet, overlapped over a few pinned connections: `LOOKUP_CONNECTIONS`), backs the whole
configuration up, sets interfaces' admin status, and
arms FortiOS's revert mode as its dead-man (`cfg-save revert` + `cfg-revert-timeout`, confirmed
by `config/save` and checked by reading the device back).
Imports the shared transports (`agent.drivers`), this folder's parser and renderer, audit,
secrets and errors; no device library."""

from __future__ import annotations

import bisect
import contextlib
import http.client
import ipaddress
import json
import secrets as pysecrets
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.audit import store_evidence
from agent.audit.redact import scrub
from agent.drivers import tls, trail
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
from agent.errors import (
    AuthError,
    CommandRejected,
    ConnectError,
    DeviceError,
    DeviceTimeout,
    SecretError,
)
from agent.network.state import NftRule
from agent.platforms.capabilities import FlowDecision, FlowQuery, Traffic, Verdict
from agent.platforms.fortigate import parse, traffic
from agent.platforms.fortigate.parse import Objects
from agent.platforms.fortigate.render import PREFIX, check_ifname, count_key
from agent.secrets import resolve

API = "/api/v2"
POLICY, ADDRESS, SERVICE, LOCAL_IN = (
    "cmdb/firewall/policy",
    "cmdb/firewall/address",
    "cmdb/firewall.service/custom",
    "cmdb/firewall/local-in-policy",
)
INTERFACE, GLOBAL = "cmdb/system/interface", "cmdb/system/global"
MIN_REVERT_S = 10  # cfg-revert-timeout's lowest value
# pinned keep-alive connections the policy lookups of one flow decision overlap over (FortiOS
# has no batch lookup and serves concurrent REST sessions): the one of every call and up to
# this many minus one more, opened at the first decision that needs them and kept while the
# device keeps them (the pool's keepalive pings only the driver's own; each handshake checks the
# pin). One the device refuses or leaves unanswered is done without for the driver's session
# (admin session or connection limits): the lookups go over the others. 4 measured best of 2,
# 4, 8: README "Platforms"
LOOKUP_CONNECTIONS = 4
Key = tuple[str, str, str, int]  # a lookup: source interface, source, destination, port


class FortiGateDriver:
    """A FortiGate over its REST API. One keep-alive HTTPS connection, pinned (and a few more
    for the overlapped policy lookups of a flow decision: `LOOKUP_CONNECTIONS`)."""

    via: Via = "ssh"  # the registry's name for "the platform's own management channel"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._conn: http.client.HTTPSConnection | None = None
        # the lookups' other connections, by slot (1 .. LOOKUP_CONNECTIONS - 1): one thread each
        self._more: dict[int, http.client.HTTPSConnection] = {}
        # `_more` and `_closed` under `_lock`: `close` may come from another thread (the pool)
        # while a decision's threads open connections; none is kept after a close
        self._lock = threading.Lock()
        self._closed = False
        # the lookups' slots below this one only: an extra one the device refused or left
        # unanswered is not asked for again until the driver is closed
        self._width = LOOKUP_CONNECTIONS
        self._armed: str | None = None  # the token of an armed revert, until confirmed
        self._applied: list[str] | None = None  # the object lines applied while armed
        # the device's own revert-mode settings before arming, put back by `confirm`
        self._prior: dict[str, Any] = {}

    # -- session ---------------------------------------------------------------------------------

    def connect(self) -> None:
        if self._conn is None:
            self._conn = tls.connect(self.target, self.timeouts.connect)
        with self._lock:
            self._closed = False

    def is_open(self) -> bool:
        return self._conn is not None and self._conn.sock is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._width = LOOKUP_CONNECTIONS
            conn, self._conn = self._conn, None
            more, self._more = list(self._more.values()), {}
        for c in [conn, *more]:
            if c is not None:
                with contextlib.suppress(Exception):
                    c.close()

    def _connection(self, slot: int) -> http.client.HTTPSConnection:
        """The connection of `slot` (0: the driver's own), opened and pin-checked if need be.
        An extra slot's is not opened, or not kept, once the driver is closed (ConnectError)."""
        if slot == 0:
            self.connect()
            assert self._conn is not None
            return self._conn
        with self._lock:
            conn = None if self._closed else self._more.get(slot)
            closed = self._closed
        if conn is None and not closed:
            new = tls.connect(self.target, self.timeouts.connect)
            with self._lock:
                if not self._closed:
                    conn = self._more[slot] = new
            if conn is None:
                with contextlib.suppress(Exception):
                    new.close()
        if conn is None:
            raise ConnectError(self.target.name, "decide", "the driver was closed")
        return conn

    def _open(self, slot: int) -> bool:
        """Whether the extra `slot`'s connection is open (opened and pin-checked if need be,
        again if the device closed it). False when the device refused it or left it unanswered,
        and from then on for the driver's session; CertificateError goes up."""
        if slot >= self._width:
            return False
        try:
            conn = self._connection(slot)
            if conn.sock is None:  # the device closed it: re-open before a request is written
                conn.connect()
        except (ConnectError, DeviceTimeout):
            self._drop(slot)
            with self._lock:
                if not self._closed:
                    self._width = min(self._width, slot)
            return False
        return True

    def _drop(self, slot: int) -> None:
        if slot == 0:
            conn, self._conn = self._conn, None
        else:
            with self._lock:
                conn = self._more.pop(slot, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def ping(self) -> None:
        self._call("GET", "monitor/system/status", operation="ping")

    def _token(self, operation: str) -> str:
        https = self.target.device.https
        if https is None or https.token is None:
            raise AuthError(
                self.target.name,
                operation,
                "no API token: the fortigate driver needs https.token (a REST API administrator)",
            )
        try:
            return resolve(
                https.token, base_dir=self.target.base_dir, what=f"{self.target.name} API token"
            )
        except SecretError as exc:
            raise AuthError(self.target.name, operation, exc.message) from None

    # -- the REST call ---------------------------------------------------------------------------

    def _raw(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        slot: int = 0,
    ) -> tuple[int, bytes]:
        token = self._token(operation)
        url = f"{API}/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection(slot)
            try:
                conn.request(method, url, body=payload, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except TimeoutError as exc:
                self._drop(slot)
                raise DeviceTimeout(
                    self.target.name, operation, f"{method} {path}: no answer in time"
                ) from exc
            except (http.client.HTTPException, ConnectionError, ssl.SSLError, OSError) as exc:
                self._drop(slot)  # a kept-alive connection the device closed: one fresh try
                if attempt == 2:
                    raise ConnectError(
                        self.target.name, operation, f"{method} {path}: {type(exc).__name__}"
                    ) from exc
        raise AssertionError("unreachable")

    def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        query: dict[str, str] | None = None,
        body: Any = None,
        missing_ok: bool = False,
        slot: int = 0,
    ) -> dict[str, Any] | None:
        """One API call; its envelope. 401/403: AuthError; 404: None with `missing_ok`, else a
        DeviceError; any other error status: CommandRejected with FortiOS's error code."""
        status, data = self._raw(
            method, path, operation=operation, query=query, body=body, slot=slot
        )
        if status == 401:
            raise AuthError(
                self.target.name,
                operation,
                f"{method} {path}: HTTP 401: the API token was refused",
                hint="check the token's file and the REST API administrator's trusted hosts",
            )
        if status == 403:
            raise AuthError(
                self.target.name,
                operation,
                f"{method} {path}: HTTP 403: the token's profile may not do this",
            )
        if status == 404 and missing_ok:
            return None
        try:
            env = parse.envelope(data, status)
        except ValueError as exc:
            raise DeviceError(self.target.name, operation, f"{method} {path}: {exc}") from None
        if status != 200 or env.get("status") != "success":
            code = env.get("error")
            raise CommandRejected(
                self.target.name,
                operation,
                f"{method} {path}",
                f"HTTP {status}, FortiOS error {code if code is not None else 'none'}"
                + (f": {scrub(str(env['cli_error']))}" if env.get("cli_error") else ""),
            )
        return env

    def _results(self, path: str, operation: str) -> list[dict[str, Any]]:
        env = self._call("GET", path, operation=operation)
        assert env is not None
        res = env.get("results")
        if not isinstance(res, list):
            raise DeviceError(self.target.name, operation, f"GET {path}: no results list")
        return [r for r in res if isinstance(r, dict)]

    # -- reads -----------------------------------------------------------------------------------

    def _device_objects(
        self, operation: str
    ) -> tuple[Objects, dict[str, str], dict[str, list[dict[str, Any]]]]:
        """Cordon's objects on the device, their placement flags, and the two policy tables as
        read (`POLICY`, `LOCAL_IN`: the device's order): four GETs."""
        addrs = self._results(ADDRESS, operation)
        svcs = self._results(SERVICE, operation)
        pols = self._results(POLICY, operation)
        local = self._results(LOCAL_IN, operation)
        try:
            objs, flags = parse.ours_from_rest(addrs, svcs, pols, local)
        except (ValueError, KeyError, TypeError) as exc:
            raise DeviceError(self.target.name, operation, f"unexpected objects: {exc}") from None
        return objs, flags, {POLICY: pols, LOCAL_IN: local}

    def ours(self, operation: str = "read") -> str:
        """Cordon's objects on the device as script lines ("" when it holds none)."""
        objs, flags, _ = self._device_objects(operation)
        return "" if objs.empty else objs.text(flags)

    def _interfaces(self, operation: str, *, oper: bool = True) -> tuple[InterfaceState, ...]:
        """Every interface's admin status (`cmdb/system/interface`) and, with `oper`, its link
        (`monitor/system/interface`, one GET more; without it the link is None: not read)."""
        cmdb = self._results(INTERFACE, operation)
        env = self._call("GET", "monitor/system/interface", operation=operation) if oper else None
        links = (env or {}).get("results") or {}
        out = []
        for i in cmdb:
            name = str(i.get("name", ""))
            link = links.get(name, {}) if isinstance(links, dict) else {}
            carrier = link.get("link") if isinstance(link, dict) else None
            out.append(
                InterfaceState(
                    name=name,
                    admin_up=i.get("status", "up") == "up",
                    oper_up=bool(carrier) if carrier is not None else None,
                )
            )
        return tuple(out)

    def _config(self, operation: str) -> str:
        status, data = self._raw(
            "GET", "monitor/system/config/backup", operation=operation, query={"scope": "global"}
        )
        if status != 200:
            self._call(
                "GET",
                "monitor/system/config/backup",
                operation=operation,
                query={"scope": "global"},
            )
            raise DeviceError(self.target.name, operation, f"backup: HTTP {status}")
        return data.decode("utf-8", errors="replace")

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read), their admin
        status only, one GET: a flow verification decides by the admin status (an interface's
        link is None here, not read; `facts` and a read-back expecting a link read it)."""
        return self._interfaces(operation, oper=False)

    def facts(self) -> Facts:
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=self._interfaces("facts"),
            config=self._config("facts"),
            ours=self.ours("facts"),
        )

    def backup(self) -> Backup:
        text = self._config("backup")
        ours = self.ours("backup")
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
            ours=ours or None,
        )

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """Each of Cordon's object lines (see `render`), None when the device holds none."""
        objs, flags, _ = self._device_objects(operation)
        return None if objs.empty else tuple(objs.lines(flags))

    def rule_counters(self) -> dict[str, int]:
        """New sessions matched by Cordon's policies (FortiOS hit counts), summed by counter key
        (`render.counted_as`); {} when it holds no policy of ours."""
        pols = self._results(POLICY, "counters")
        names = {int(p["policyid"]): str(p.get("name", "")) for p in pols if "policyid" in p}
        hits = self._results("monitor/firewall/policy", "counters")
        out: dict[str, int] = {}
        for h in hits:
            key = count_key(names.get(int(h.get("policyid", -1)), ""))
            if key is not None:
                out[key] = out.get(key, 0) + int(h.get("hit_count", 0))
        return out

    def rule_traffic(self, rules: Sequence[NftRule]) -> list[Traffic | None]:
        """Packets and bytes of the sessions each rule's policy let through (FortiOS policy
        counters, both directions); None for a rule it holds no policy of (see `traffic`)."""
        pols = self._results(POLICY, "traffic")
        counted = self._results("monitor/firewall/policy", "traffic")
        try:
            return traffic.per_rule(pols, counted, rules)
        except ValueError as exc:
            raise DeviceError(
                self.target.name, "traffic", f"unexpected device output: {exc}"
            ) from None

    def decide_flows(self, queries: Sequence[FlowQuery]) -> list[FlowDecision]:
        """What this FortiGate does with each packet, by its own policy lookup
        (`monitor/firewall/policy-lookup`: the policy a new session would hit) and that policy's
        action (one read of the policy table). A reply is carried by the session its request
        opened (FortiOS is stateful): it is decided by its request's lookup. No route or an
        unexpected answer: UNKNOWN, saying so. One lookup per distinct packet, overlapped over
        `LOOKUP_CONNECTIONS` connections; any lookup that fails fails the whole decision."""
        actions = {
            int(p["policyid"]): str(p.get("action", "deny"))
            for p in self._results(POLICY, "decide")
            if str(p.get("policyid", "")).isdigit() and p.get("status", "enable") == "enable"
        }
        keys: list[Key] = [
            (q.out_if, q.dst, q.src, q.sport or 0)
            if q.reply
            else (q.in_if, q.src, q.dst, q.dport or 0)
            for q in queries
        ]
        seen = self._overlapped(
            list(dict.fromkeys(keys)),
            lambda key, slot: self._lookup(*key, actions=actions, slot=slot),
        )
        return [seen[key] for key in keys]

    def _overlapped(
        self, keys: list[Key], lookup: Callable[[Key, int], FlowDecision]
    ) -> dict[Key, FlowDecision]:
        """`lookup(key, slot)` of every key, over up to `LOOKUP_CONNECTIONS` connections at
        once (one thread per connection slot, this one on slot 0, each taking the next key
        left); the answers by key, so their order is the keys' whatever the timing. The first
        failure stops every slot from taking another key and, once all have stopped, is raised
        (that of the earliest key when several failed): no partial decision is returned. An
        extra slot whose connection the device refuses or leaves unanswered takes no key (its
        thread ends; `_open`); another certificate, or any failure once a request was sent,
        fails the whole read."""
        width = max(1, min(self._width, len(keys)))
        todo = iter(enumerate(keys))
        taking = threading.Lock()
        stop = threading.Event()
        out: dict[Key, FlowDecision] = {}
        failed: dict[int, BaseException] = {}

        def work(slot: int) -> None:
            while not stop.is_set():
                # an extra slot takes a key only over a connection open: one the device refuses
                # or leaves unanswered ends the slot, the others (slot 0 always) take its share
                try:
                    if slot and not self._open(slot):
                        return
                except BaseException as exc:  # another certificate: the whole read fails
                    failed[-1] = exc
                    stop.set()
                    return
                with taking:
                    nxt = next(todo, None)
                if nxt is None:
                    return
                i, key = nxt
                try:
                    out[key] = lookup(key, slot)
                except BaseException as exc:
                    failed[i] = exc
                    stop.set()
                    return

        if width == 1:
            work(0)
        else:
            with ThreadPoolExecutor(width - 1, thread_name_prefix="fortigate-lookup") as pool:
                others = [pool.submit(work, slot) for slot in range(1, width)]
                work(0)
                for f in others:
                    f.result()
        if failed:
            raise failed[min(failed)]
        return out

    def _lookup(  # noqa: PLR0911 - one answer per case of the lookup
        self,
        srcintf: str,
        src: str,
        dst: str,
        port: int,
        *,
        actions: dict[int, str],
        slot: int = 0,
    ) -> FlowDecision:
        if not port:
            return FlowDecision(Verdict.UNKNOWN, "no destination port to look up")
        try:  # nothing but an interface name and addresses reaches the URL
            query = {
                "srcintf": check_ifname(srcintf),
                "sourceip": str(ipaddress.IPv4Address(src)),
                "dest": str(ipaddress.IPv4Address(dst)),
                "protocol": "tcp",
                "destport": str(int(port)),
            }
        except ValueError as exc:
            return FlowDecision(Verdict.UNKNOWN, f"not asked: {exc}")
        env = self._call(
            "GET", "monitor/firewall/policy-lookup", operation="decide", query=query, slot=slot
        )
        res = (env or {}).get("results")
        if not isinstance(res, dict) or res.get("success") is not True:
            return FlowDecision(Verdict.UNKNOWN, "the FortiGate's policy lookup found no route")
        pid = res.get("policy_id")
        if not isinstance(pid, int):
            return FlowDecision(Verdict.UNKNOWN, "the policy lookup named no policy")
        if pid == 0:
            return FlowDecision(Verdict.DROP, "implicit deny (policy 0)")
        action = actions.get(pid)
        if action is None:
            return FlowDecision(Verdict.UNKNOWN, f"policy {pid} is not in the policy table")
        verdict = Verdict.ACCEPT if action == "accept" else Verdict.DROP
        return FlowDecision(verdict, f"policy {pid} ({action})")

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            objs, flags, _ = self._device_objects("verify")
            ifs = (
                self._interfaces("verify", oper=bool(expect.oper_up))
                if expect.admin_up or expect.oper_up
                else ()
            )
            ours = "" if objs.empty else objs.text(flags)
            facts = Facts(
                device=self.target.name,
                platform=self.target.device.platform,
                via=self.via,
                interfaces=ifs,
                ours=ours,
            )
            wrong = mismatches(facts, expect, config=ours)
            present = not objs.empty
            if expect.table_present is not None and present != expect.table_present:
                wrong.append(
                    f"Cordon's objects {'present' if present else 'absent'}, expected "
                    f"{'present' if expect.table_present else 'absent'}"
                )
            if expect.rule_comments is not None:
                have = set(objs.lines(flags))
                if have != set(expect.rule_comments):
                    wrong.append(
                        f"Cordon's objects differ: missing {sorted(expect.rule_comments - have)}, "
                        f"unexpected {sorted(have - expect.rule_comments)}"
                    )
            return facts, wrong

        return trail.verify_loop(
            self.target,
            via=self.via,
            action=action,
            read=read,
            timeout=self.timeouts.settle if timeout is None else timeout,
        )

    # -- change ----------------------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> ApplyResult:
        commands = tuple(changes.commands)
        ifaces = [c for c in commands if c.startswith("interface ")]
        try:
            wanted = parse.parse_script([c for c in commands if not c.startswith("interface ")])
            shut = [_interface_line(c) for c in ifaces]
        except ValueError as exc:
            raise DeviceError(
                self.target.name,
                "apply",
                f"script refused before sending: {exc}",
                hint="Cordon writes only its own cordon- objects and interface status",
            ) from None
        t0 = time.monotonic()
        done: list[str] = []
        try:
            for name, up in shut:
                self._call(
                    "PUT",
                    f"{INTERFACE}/{_q(name)}",
                    operation="apply",
                    body={"status": "up" if up else "down"},
                )
                done.append(f"PUT {INTERFACE}/{name} status={'up' if up else 'down'}")
            if len(ifaces) != len(commands):
                done += self._converge(wanted)
                if self._armed is not None:
                    self._applied = wanted.lines()
            if self._armed is None and (done or not self._saves_itself()):
                self._call("POST", "monitor/system/config/save", operation="apply", body={})
                done.append("POST monitor/system/config/save")
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        return trail.change_applied(
            self.target,
            via=self.via,
            changes=changes,
            commands=commands,
            output="\n".join(done) + "\n",
            started=t0,
        )

    def _converge(self, wanted: Objects) -> list[str]:
        """Make Cordon's objects on the device exactly `wanted`, with one read of the device
        first and only the calls that differ: addresses and services created or changed first
        (policies name them); in each policy table, new policies created (FortiOS appends a
        new policy at the end of its table), changed ones edited, those out of place moved, one
        move each at most, then Cordon's policies no longer wanted deleted; objects no longer
        named, last. The order is tracked from that one read, not read again: the read-back
        after the change (`verify`) checks it. Returns the calls made."""
        have, _flags, tables = self._device_objects("apply")
        done: list[str] = []
        for name, cidr in wanted.addresses.items():
            body = {
                "name": name,
                "type": "ipmask",
                "subnet": parse.fortios_subnet(cidr),
                "comment": "cordon",
            }
            if name not in have.addresses:
                done.append(self._write("POST", ADDRESS, name, body=body))
            elif have.addresses[name] != cidr:
                done.append(self._write("PUT", f"{ADDRESS}/{_q(name)}", name, body=body))
        for name, port in wanted.services.items():
            body = {
                "name": name,
                "protocol": "TCP/UDP/SCTP",
                "tcp-portrange": str(port),
                "comment": "cordon",
            }
            if name not in have.services:
                done.append(self._write("POST", SERVICE, name, body=body))
            elif have.services[name] != port:
                done.append(self._write("PUT", f"{SERVICE}/{_q(name)}", name, body=body))
        done += self._converge_table(
            POLICY,
            tables[POLICY],
            {p.name: p for p in have.policies},
            [(p.name, p, parse.policy_body(p)) for p in wanted.policies],
            _policy_name,
        )
        done += self._converge_table(
            LOCAL_IN,
            tables[LOCAL_IN],
            {p.name: p for p in have.local_in},
            [(p.name, p, parse.local_in_body(p)) for p in wanted.local_in],
            parse.local_in_name,
        )
        for name in have.addresses.keys() - wanted.addresses.keys():
            done.append(self._write("DELETE", f"{ADDRESS}/{_q(name)}", name))
        for name in have.services.keys() - wanted.services.keys():
            done.append(self._write("DELETE", f"{SERVICE}/{_q(name)}", name))
        return done

    def _write(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> str:
        """One write; the line that records it."""
        env = self._call(method, path, operation="apply", body=body, query=query)
        mkey = (env or {}).get("mkey") if method == "POST" else None
        how = "&".join(f"{k}={v}" for k, v in (query or {}).items())
        return f"{method} {path}{'?' + how if how else ''} {what}" + (
            f" -> {mkey}" if mkey is not None else ""
        )

    def _converge_table(
        self,
        path: str,
        rows: list[dict[str, Any]],
        current: dict[str, Any],
        wanted: list[tuple[str, Any, dict[str, Any]]],
        ours: Any,
    ) -> list[str]:
        """One policy table (`path`, its `rows` as read, in order) made to hold exactly the
        `wanted` (name, object, REST body) of Cordon's first, in that order; `ours(row)` is the
        Cordon name of a row, None for the site's own."""
        done: list[str] = []
        order = [int(r["policyid"]) for r in rows if "policyid" in r]
        ids = {n: int(r["policyid"]) for r in rows if "policyid" in r and (n := ours(r))}
        want = {name for name, _, _ in wanted}
        # deleted from the bottom of the table up: a packet's first match is then never one of
        # the policies deleted after it, so each flow goes from its verdict now to its verdict
        # after, never through a third (deleting an accept before the drop below it would cut
        # a must-survive flow until that drop goes too)
        going = sorted((n for n in current if n not in want), key=lambda n: -order.index(ids[n]))
        for name, obj, body in wanted:
            if name not in current:
                env = self._call("POST", path, operation="apply", body={"policyid": 0, **body})
                try:
                    ids[name] = int((env or {}).get("mkey", ""))
                except ValueError:
                    raise DeviceError(
                        self.target.name, "apply", f"POST {path} {name}: no policy id answered"
                    ) from None
                order.append(ids[name])
                done.append(f"POST {path} {name} -> {ids[name]}")
            elif current[name] != obj:
                done.append(self._write("PUT", f"{path}/{ids[name]}", name, body=body))
        # made before broken: the new policies are in place (before every other one, Cordon's
        # going ones included, which `moves` keeps where they are like the site's) before any
        # going one is deleted. A merged deny (`render.merge`) changes name when its members
        # change between two steps: deleting the old one first would open what both cut.
        site = [pid for pid in order if pid not in {ids[n] for n in want}]
        for pid, where in moves(order, [ids[n] for n, _, _ in wanted], site):
            done.append(
                self._write("PUT", f"{path}/{pid}", str(pid), query={"action": "move", **where})
            )
        for name in going:
            done.append(self._write("DELETE", f"{path}/{ids[name]}", name))
        return done

    # -- dead-man: FortiOS revert mode -----------------------------------------------------------

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """Arm FortiOS's revert mode: the device's saved configuration must already be the
        fail-safe state `changes` describes (its Cordon objects read back equal to them: then it
        is saved, so a revert goes exactly there), then `cfg-save revert` with
        `cfg-revert-timeout` = `seconds`: the next changes stay unsaved and the device goes back
        to the saved configuration by itself unless `confirm` saves them in time."""
        try:
            lines = [c for c in changes.commands if not c.startswith("interface ")]
            back = parse.parse_script(lines)
        except ValueError as exc:
            raise DeviceError(self.target.name, "arm", f"revert script refused: {exc}") from None
        have, flags, _ = self._device_objects("arm")
        if have.lines(flags) != back.lines():
            raise DeviceError(
                self.target.name,
                "arm",
                "the device does not hold the fail-safe state the revert would restore; "
                "nothing armed",
                hint="read the device's facts, then re-run",
            )
        timeout = max(MIN_REVERT_S, int(seconds + 0.999))
        before = self._global("arm")
        self._prior = {
            k: before[k] for k in ("cfg-save", "cfg-revert-timeout") if before.get(k) is not None
        }
        if self._prior.get("cfg-save") == "revert":  # a revert pending is never ours to keep
            self._prior["cfg-save"] = "automatic"
        self._call("POST", "monitor/system/config/save", operation="arm", body={})
        self._call(
            "PUT",
            GLOBAL,
            operation="arm",
            body={"cfg-save": "revert", "cfg-revert-timeout": timeout},
        )
        glob = self._global("arm")
        if glob.get("cfg-save") != "revert" or int(glob.get("cfg-revert-timeout", 0)) != timeout:
            raise DeviceError(self.target.name, "arm", "revert mode not shown after setting it")
        token = pysecrets.token_hex(6)
        self._armed = token
        trail.change(
            self.target,
            via=self.via,
            action=f"{changes.action}.arm",
            commands=(),
            outcome="ok",
            duration_s=0.0,
            output=f"cfg-save revert, cfg-revert-timeout {timeout} s",
        )
        return token

    def confirm(self, token: str) -> bool:
        """Save the configuration and leave revert mode; True when the device, read back after
        that, holds the applied change saved in automatic mode (no revert can be pending); False
        when the revert already ran (Cordon's objects read back are no longer the ones applied).
        No read before the save: had the revert run, the running configuration is the saved
        one already (FortiOS reverts to it), so the save changes nothing and the read after it
        says so; that read was one read of the four tables more for the same answer."""
        if token != self._armed:
            return False
        self._armed = None
        applied, self._applied = self._applied, None
        self._call("POST", "monitor/system/config/save", operation="confirm", body={})
        prior = {"cfg-save": "automatic", **self._prior}
        self._call("PUT", GLOBAL, operation="confirm", body=prior)
        have, flags, _ = self._device_objects("confirm")
        glob = self._global("confirm")
        fired = glob.get("cfg-save") != prior["cfg-save"] or (
            applied is not None and have.lines(flags) != applied
        )
        trail.change(
            self.target,
            via=self.via,
            action="deadman.confirm",
            commands=(),
            outcome="fired" if fired else "ok",
            duration_s=0.0,
        )
        return not fired

    def _saves_itself(self) -> bool:
        """Whether a change that wrote nothing needs no save: only when the device saves each
        write by itself (`cfg-save automatic`, read now). In manual (or revert) mode an earlier
        save may have failed after its writes: a retry writes nothing, and without a save the
        change would be lost at the next reboot."""
        return self._global("apply").get("cfg-save") == "automatic"

    def _global(self, operation: str) -> dict[str, Any]:
        env = self._call("GET", GLOBAL, operation=operation)
        res = (env or {}).get("results")
        return res if isinstance(res, dict) else {}


def moves(order: list[int], target: list[int], site: list[int]) -> list[tuple[int, dict[str, str]]]:
    """The fewest FortiOS moves (`before=`/`after=` a neighbour) that turn a policy table's
    `order` into `target` (Cordon's, in order) followed by the `site` policies in their order.
    The site's policies never move; Cordon's that already sit before the first of them in the
    right relative order (a longest increasing run of their target positions) stay; each other
    one moves once, right after its predecessor in `target` (the first: before the first policy
    that stays)."""
    if not target:
        return []
    rank = {pid: i for i, pid in enumerate(target)}
    head = []  # Cordon's policies before the first site policy, as target positions
    for pid in order:
        if pid not in rank:
            break
        head.append(rank[pid])
    stay = {target[i] for i in _increasing(head)}
    out: list[tuple[int, dict[str, str]]] = []
    fixed = stay | set(site)
    for i, pid in enumerate(target):
        if pid in stay:
            continue
        if i == 0:
            anchor = next(p for p in [*target, *site] if p in fixed)
            out.append((pid, {"before": str(anchor)}))
        else:
            out.append((pid, {"after": str(target[i - 1])}))
    return out


def _increasing(values: list[int]) -> list[int]:
    """The values of a longest strictly increasing subsequence of `values`."""
    tails: list[int] = []  # tails[k]: index of the smallest last value of a run of k+1
    tail_values: list[int] = []
    back: list[int] = [-1] * len(values)
    for i, v in enumerate(values):
        k = bisect.bisect_left(tail_values, v)
        back[i] = tails[k - 1] if k else -1
        if k == len(tails):
            tails.append(i)
            tail_values.append(v)
        else:
            tails[k], tail_values[k] = i, v
    out = []
    i = tails[-1] if tails else -1
    while i >= 0:
        out.append(values[i])
        i = back[i]
    return out[::-1]


def _policy_name(row: dict[str, Any]) -> str | None:
    name = str(row.get("name", ""))
    return name if name.startswith(PREFIX) else None


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _interface_line(line: str) -> tuple[str, bool]:
    words = line.split()
    if len(words) != 3 or words[2] not in ("up", "down"):
        raise ValueError(f"not an interface line: {line[:80]!r}")
    return check_ifname(words[1]), words[2] == "up"


__all__ = ["PREFIX", "FortiGateDriver"]
