"""Owns the aruba_aoscx driver: the AOS-CX REST API (v10.09) over the pinned HTTPS connection of
`agent.drivers.tls` for every object (interfaces' admin state, Cordon's ACLs and where they are
applied, the running configuration for backups), and the CLI over SSH for the one thing REST does
not offer, the native dead-man (`checkpoint auto N` / `checkpoint auto confirm`, `cli`). A PUT
replaces every writable attribute of its object, so each write GETs them (`selector=writable`)
and sends them all back with only Cordon's attributes changed (`_replace`).
Imports the shared transports (`agent.drivers`), this folder's renderer, parser and CLI session,
audit, secrets and errors; must not import netmiko, pysnmp, the engine or the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import re
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from agent import secrets
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
from agent.errors import AuthError, CommandRejected, ConnectError, DeviceError, DeviceTimeout
from agent.platforms.aruba_aoscx import cli, parse
from agent.platforms.aruba_aoscx.render import PREFIX

T = TypeVar("T")
_ATTRS = "name,admin_state,link_state,aclv4_routed_in_cfg,aclv4_routed_out_cfg"
_CREATED = re.compile(r"checkpoint (AUTO[0-9]{14}) created")


class AoscxDriver:
    """An AOS-CX switch: REST for its objects, the CLI for its auto checkpoint."""

    via: Via = "ssh"

    def __init__(self, target: Target, timeouts: Timeouts | None = None) -> None:
        self.target = target
        self.timeouts = timeouts or Timeouts()
        self._conn: http.client.HTTPSConnection | None = None
        self._cookie: str | None = None
        self._cli: cli.Session | None = None  # the CLI login of an armed checkpoint, to confirm
        self._cli_until = 0.0  # when that checkpoint expires (monotonic): no confirm after it

    # -- session ---------------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        https = self.target.device.https
        if https is None or https.username is None or https.password is None:
            raise DeviceError(
                self.target.name,
                "connect",
                "no REST API credentials",
                hint="give the device https: {username, password: 'file:...'} in the inventory",
            )
        pwd = secrets.resolve(
            https.password, base_dir=self.target.base_dir, what=f"{self.target.name} https password"
        )
        return https.username, pwd

    def connect(self) -> None:
        if self.is_open():
            return
        self.close()
        user, pwd = self._credentials()
        conn = tls.connect(self.target, self.timeouts.connect)  # pin checked before a byte is sent
        self._conn = conn
        form = urllib.parse.urlencode({"username": user, "password": pwd})
        status, _body, headers = self._raw(
            "POST",
            f"{parse.API}/login",
            form.encode(),
            "application/x-www-form-urlencoded",
            "connect",
        )
        if status == 401:
            self._drop()
            raise AuthError(self.target.name, "connect", "REST login refused (401)")
        cookie = headers.get("set-cookie", "")
        m = re.search(r"(?:^|[;,]\s*)id=([^;,\s]+)", cookie)
        if status != 200 or m is None:
            self._drop()
            raise ConnectError(self.target.name, "connect", f"REST login answered {status}")
        self._cookie = f"id={m.group(1)}"

    def is_open(self) -> bool:
        return self._conn is not None and self._cookie is not None

    def close(self) -> None:
        if self.is_open():
            with contextlib.suppress(Exception):  # closing must never raise
                self._raw("POST", f"{parse.API}/logout", b"", None, "close")
        self._drop()
        self._close_cli()

    def _close_cli(self) -> None:
        session, self._cli = self._cli, None
        if session is not None:
            session.close()

    def _expire_cli(self) -> None:
        """Close the kept login once its checkpoint expired: the armed change was given up
        (no confirm came: a failed audit, a fenced node, a failed restore) and the switch has
        restored it. Called on the driver's next use (the pool's keepalive ping, an apply)."""
        if self._cli is not None and time.monotonic() >= self._cli_until:
            self._close_cli()

    def _cli_session(self, operation: str) -> cli.Session:
        """The CLI login kept from the arm when it still answers (`cli.Session.alive`: a login
        silently dead since would time the confirm out, and the switch revert a step a new
        login confirms), else a new one."""
        if self._cli is None or not self._cli.alive():
            self._close_cli()
            self._cli = cli.Session(self.target, self.timeouts, operation)
        return self._cli

    def _drop(self) -> None:
        conn, self._conn, self._cookie = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def ping(self) -> None:
        self._expire_cli()
        self._get("/system/interfaces?depth=1", "ping")

    # -- HTTP plumbing ---------------------------------------------------------------------------

    def _raw(
        self, method: str, path: str, body: bytes | None, ctype: str | None, operation: str
    ) -> tuple[int, bytes, dict[str, str]]:
        conn = self._conn
        assert conn is not None
        headers = {"Accept": "application/json"}
        if ctype:
            headers["Content-Type"] = ctype
        if self._cookie:
            headers["Cookie"] = self._cookie
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError as exc:
            self._drop()
            raise DeviceTimeout(
                self.target.name, operation, f"no REST answer within {self.timeouts.command:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ConnectError(self.target.name, operation, f"REST session lost: {exc}") from exc
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}

    def _call(
        self, method: str, rel: str, operation: str, payload: Any = None
    ) -> tuple[int, bytes]:
        self.connect()
        body = None if payload is None else json.dumps(payload).encode()
        status, data, _h = self._raw(
            method, parse.API + rel, body, "application/json" if body else None, operation
        )
        if status == 401:
            self._drop()
            raise AuthError(self.target.name, operation, "REST session refused (401)")
        return status, data

    def _get(self, rel: str, operation: str) -> Any:
        status, data = self._call("GET", rel, operation)
        return self._json(rel, operation, status, data)

    def _json(self, rel: str, operation: str, status: int, data: bytes) -> Any:
        if status != 200:
            raise DeviceError(
                self.target.name,
                operation,
                f"GET {rel} answered {status}: {scrub(data.decode())[:200]}",
            )
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise DeviceError(
                self.target.name, operation, f"GET {rel}: not JSON ({exc.msg})"
            ) from None

    def _write(self, method: str, rel: str, operation: str, payload: Any = None) -> None:
        status, data = self._call(method, rel, operation, payload)
        if status not in (200, 201, 204):
            raise CommandRejected(
                self.target.name,
                operation,
                f"{method} {rel}",
                f"{status} {scrub(data.decode())[:300]}",
            )

    # -- reads -----------------------------------------------------------------------------------

    def _interfaces(self, operation: str) -> dict[str, Any]:
        data = self._get(f"/system/interfaces?depth=2&attributes={_ATTRS}", operation)
        if not isinstance(data, dict):
            raise DeviceError(self.target.name, operation, "interfaces: not a JSON object")
        return data

    def _acls(self, operation: str) -> dict[str, Any]:
        data = self._get("/system/acls?depth=2", operation)
        if not isinstance(data, dict):
            raise DeviceError(self.target.name, operation, "ACLs: not a JSON object")
        return {
            str(v.get("name", k.rsplit(",", 1)[0])): v
            for k, v in data.items()
            if isinstance(v, dict)
        }

    def _ours(self, operation: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        ifs, acls = self._interfaces(operation), self._acls(operation)
        return self._parse(operation, lambda _: parse.ours_text(acls, ifs), ""), ifs, acls

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Its interfaces alone (`ReadsInterfaces`: a flow verification's read), one GET; not
        `facts`, which reads the ACLs and the whole running configuration besides."""
        return self._parse(operation, parse.parse_interfaces, self._interfaces(operation))

    def facts(self) -> Facts:
        ours, ifs, _acls = self._ours("facts")
        return Facts(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            interfaces=self._parse("facts", parse.parse_interfaces, ifs),
            config=self._running("facts"),
            ours=ours,
        )

    def _running(self, operation: str) -> str:
        return json.dumps(
            self._get("/fullconfigs/running-config", operation), indent=1, sort_keys=True
        )

    def backup(self) -> Backup:
        text = self._running("backup")
        ours, _ifs, _acls = self._ours("backup")
        return Backup(
            device=self.target.name,
            platform=self.target.device.platform,
            via=self.via,
            text=text,
            sha256=store_evidence(text),
            ours=ours or None,
        )

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The comment of every entry of Cordon's ACLs, None when the switch holds none."""
        acls = self._acls(operation)
        if not any(name.startswith(PREFIX) for name in acls):
            return None
        return parse.ace_comments(acls)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        def read() -> tuple[Facts, list[str]]:
            ours, ifs, acls = self._ours("verify")
            facts = Facts(
                device=self.target.name,
                platform=self.target.device.platform,
                via=self.via,
                interfaces=self._parse("verify", parse.parse_interfaces, ifs),
                ours=ours,
            )
            wrong = mismatches(facts, expect, config=ours)
            present = any(name.startswith(PREFIX) for name in acls)
            if expect.table_present is not None and present != expect.table_present:
                wrong.append(
                    f"Cordon's ACLs {'present' if present else 'absent'}, expected "
                    f"{'present' if expect.table_present else 'absent'}"
                )
            if expect.rule_comments is not None:
                have = list(parse.ace_comments(acls))
                if sorted(have) != sorted(expect.rule_comments):
                    wrong.append(
                        f"entries of Cordon's ACLs differ: missing "
                        f"{sorted(expect.rule_comments - set(have))}, unexpected "
                        f"{sorted(set(have) - expect.rule_comments)}, duplicated "
                        f"{sorted({c for c in have if have.count(c) > 1})}"
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
        self._expire_cli()
        commands = tuple(changes.commands)
        t0 = time.monotonic()
        try:
            if not any(c.strip() for c in commands):
                done = "nothing to send"
            elif parse.is_acl_script(commands):
                desired = self._parse("apply", parse.parse_script, commands)
                done = self._converge(desired)
            else:
                wanted = self._parse("apply", parse.parse_shutdown, commands)
                done = self._shut(wanted)
        except DeviceError as exc:
            trail.change_failed(
                self.target, via=self.via, changes=changes, commands=commands, exc=exc, started=t0
            )
            raise
        return trail.change_applied(
            self.target, via=self.via, changes=changes, commands=commands, output=done, started=t0
        )

    def _ours_of(self, obj: Any) -> dict[str, Any]:
        """The attributes of an interface Cordon changes (its admin state, its routed ACLs)."""
        return {
            "admin_state": obj.get("admin_state", "up"),
            "aclv4_routed_in_cfg": obj.get("aclv4_routed_in_cfg"),
            "aclv4_routed_out_cfg": obj.get("aclv4_routed_out_cfg"),
        }

    def _replace(self, rel: str, changes: dict[str, Any], operation: str) -> None:
        """Change some attributes of one object the documented way: AOS-CX's PUT replaces EVERY
        writable attribute (one left out is reset to its default: a port would lose its
        description, its VLAN, ...), and this API version has no PATCH; so GET the object's
        writable attributes (`?selector=writable`), change `changes` in them and PUT the whole
        body back (AOS-CX REST API Guide, "PUT method usage and considerations" and "Best
        practice method for building the PUT request body"; pyaoscx does the same)."""
        status, data = self._call("GET", f"{rel}?selector=writable", operation)
        if status == 404:
            raise CommandRejected(self.target.name, operation, f"GET {rel}", "404 no such object")
        body = self._json(rel, operation, status, data)
        if not isinstance(body, dict):
            raise DeviceError(self.target.name, operation, f"GET {rel}: not a JSON object")
        missing = sorted(set(changes) - set(body))
        if missing:
            raise DeviceError(
                self.target.name,
                operation,
                f"GET {rel}?selector=writable has no attribute {missing[0]}: not written",
            )
        self._write("PUT", rel, operation, body | changes)

    def _shut(self, wanted: dict[str, bool]) -> str:
        """Each port's admin state: its writable attributes read and written back (`_replace`:
        a port the switch does not have answers 404 there, CommandRejected; no read of every
        interface first, which was one round trip more per step for the same refusal)."""
        out = []
        for name, up in sorted(wanted.items()):
            state = "up" if up else "down"
            self._replace(parse.if_path(name), {"admin_state": state}, "apply")
            out.append(f"PUT {parse.if_path(name)} admin_state={state}")
        return "\n".join(out)

    def _converge(self, desired: parse.Desired) -> str:
        """Make Cordon's ACLs and their applications exactly `desired`: write the wanted ACLs,
        apply them, then detach and delete the ones no longer wanted (others' ACLs untouched)."""
        ifs, acls = self._interfaces("apply"), self._acls("apply")
        out: list[str] = []
        for name, aces in sorted(desired.acls.items()):
            key = parse.acl_key(name)
            if name in acls:
                if (acls[name].get("cfg_aces") or {}) != aces:
                    # a new cfg_version is what makes the switch write the entries to hardware
                    version = int(acls[name].get("cfg_version") or 0) + 1
                    changes = {"cfg_aces": aces, "cfg_version": version}
                    self._replace(f"/system/acls/{key}", changes, "apply")
                    out.append(f"PUT /system/acls/{key}")
            else:
                new = {
                    "name": name,
                    "list_type": parse.LIST_TYPE,
                    "cfg_aces": aces,
                    "cfg_version": 0,
                }
                self._write("POST", "/system/acls", "apply", new)
                out.append(f"POST /system/acls {key}")
        for iface, obj in sorted(ifs.items()):
            applied = desired.applied.get(iface, {})
            body: dict[str, Any] = self._ours_of(obj)
            for way in ("in", "out"):
                attr = f"aclv4_routed_{way}_cfg"
                have = parse.ref_name(obj.get(attr))
                if have is not None and not have.startswith(PREFIX):
                    if way in applied:
                        raise CommandRejected(
                            self.target.name,
                            "apply",
                            f"interface {iface}",
                            f"holds ACL {have} routed-{way}, not Cordon's: refusing to replace it",
                        )
                    continue
                want = applied.get(way)
                body[attr] = {parse.acl_key(want): parse.acl_uri(want)} if want else None
            if body != self._ours_of(obj):
                acls_only = {k: v for k, v in body.items() if k != "admin_state"}
                self._replace(parse.if_path(iface), acls_only, "apply")
                out.append(f"PUT {parse.if_path(iface)}")
        missing = sorted(set(desired.applied) - set(ifs))
        if missing:
            raise CommandRejected(
                self.target.name, "apply", f"interface {missing[0]}", "404 no such interface"
            )
        for name in sorted(acls):
            if name.startswith(PREFIX) and name not in desired.acls:
                self._write("DELETE", f"/system/acls/{parse.acl_key(name)}", "apply")
                out.append(f"DELETE /system/acls/{parse.acl_key(name)}")
        return "\n".join(out)

    # -- dead-man (native: checkpoint auto) ------------------------------------------------------

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """`checkpoint auto N` (N = `seconds` in whole minutes, 1 to 60): unless confirmed in
        time, the switch restores the configuration it had when armed, by itself. The executor
        arms before it applies, so that configuration is `changes`' state (the state before);
        the switch needs no script for it. Returns a token for `confirm`."""
        minutes = min(60, max(1, math.ceil(seconds / 60)))
        t0 = time.monotonic()
        try:  # the login stays open for the confirm, a step later: one SSH handshake, not two
            text = self._cli_session("arm").run([f"checkpoint auto {minutes}"], "arm")[0]
        except DeviceError:
            self._cli = None  # dropped by the session
            raise
        if "expires in" not in text:
            self._close_cli()
            raise CommandRejected(
                self.target.name, "arm", f"checkpoint auto {minutes}", scrub(text)
            )
        trail.change(
            self.target,
            via=self.via,
            action=f"{changes.action}.arm",
            commands=(f"checkpoint auto {minutes}",),
            outcome="ok",
            duration_s=time.monotonic() - t0,
            output=text,
        )
        self._cli_until = t0 + minutes * 60.0
        return f"auto-{minutes}"

    def confirm(self, token: str) -> bool:
        """`checkpoint auto confirm`, then `show checkpoint` read back: True only when the
        checkpoint it named is listed; False when no auto checkpoint was pending (it expired:
        the switch restored the configuration by itself)."""
        t0 = time.monotonic()
        try:
            said, listing = self._cli_session("confirm").run(
                ["checkpoint auto confirm", "show checkpoint"], "confirm"
            )
        finally:
            self._close_cli()
        m = _CREATED.search(said)
        kept = m is not None and re.search(rf"^{m.group(1)}\s", listing, re.M) is not None
        trail.change(
            self.target,
            via=self.via,
            action="deadman.confirm",
            commands=("checkpoint auto confirm",),
            outcome="ok" if kept else "fired",
            duration_s=time.monotonic() - t0,
            output=said,
        )
        return kept

    # -- plumbing --------------------------------------------------------------------------------

    def _parse(self, operation: str, parser: Callable[[Any], T], data: Any) -> T:
        try:
            return parser(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DeviceError(self.target.name, operation, f"unexpected input: {exc}") from None
