"""Owns the aruba_aoscx twin device's management plane: an emulated AOS-CX REST API (v10.09
subset: login/logout with a session cookie, `/system/interfaces`, `/system/acls`,
`/fullconfigs/running-config`) over HTTPS, and the switch's `checkpoint auto` timer, reached by
the twin's CLI (`twin_cli`) over a Unix socket in the device's directory. Its effects are real in
the device's namespace: `admin_state` is the kernel link's state, and the ACLs applied routed-in /
routed-out become its own nftables table (`table inet aoscx_twin`), built from ITS ACLs with
AOS-CX semantics (entries in sequence order, first match, implicit deny at the end, stateless
`established` = ACK or RST set); a port's access VLAN (`vlan_tag`) is its membership of that VLAN's
bridge and a VLAN interface's `ip4_address` the bridge's address. A PUT replaces EVERY writable
attribute of the object, as AOS-CX documents it: an attribute the body leaves out is reset to its
default (a description removed, a port back in VLAN 1, a VLAN interface without its address),
with the same real effects; `GET ...?selector=writable` returns the body a PUT must carry. An
unconfirmed auto checkpoint restores the configuration it saved, by this process's own timer (it
outlives the agent's session and the agent).

Run by the lab as `python -m agent.platforms.aruba_aoscx.twin_api CONFIG` inside the namespace
(`twin.py`); CONFIG is a 0600 JSON file (it holds the API password). Standard library only; imports
nothing of the project. The shapes it follows are in `fixtures/` beside it."""

from __future__ import annotations

import copy
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Any

API = "/rest/v10.09"
TABLE = "aoscx_twin"
_ACL_KEY = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64}),ipv4$")
# writable attributes and the default a PUT that leaves one out resets it to (AOS-CX REST API
# Guide, "PUT method usage and considerations"); vlan_* on ports, ip4_address on VLAN interfaces
_IF_DEFAULTS: dict[str, Any] = {
    "admin_state": "up",
    "description": None,
    "aclv4_routed_in_cfg": None,
    "aclv4_routed_out_cfg": None,
}
_PORT_DEFAULTS: dict[str, Any] = {"vlan_mode": "access", "vlan_tag": None}  # None: VLAN 1
_VLAN_IF_DEFAULTS: dict[str, Any] = {"ip4_address": None}
_ACL_DEFAULTS: dict[str, Any] = {"cfg_aces": {}, "cfg_version": 0}
_VLAN_IF = re.compile(r"^vlan([0-9]{1,4})$")
_ACE_ATTRS = {
    "action", "protocol", "src_ip", "dst_ip", "src_l4_port_min", "src_l4_port_max",
    "dst_l4_port_min", "dst_l4_port_max", "tcp_established", "count", "comment",
}  # fmt: skip


class Refused(Exception):
    """A request the switch refuses: HTTP status and the plain-text message AOS-CX answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _ip(value: Any, where: str) -> str:
    m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,3}(?:\.\d{1,3}){3})", str(value))
    if m is None or any(int(p) > 255 for p in re.split(r"[./]", str(value))):
        raise Refused(400, f"Invalid value for attribute '{where}': {value!r}")
    bits = "".join(f"{int(p):08b}" for p in m.group(2).split("."))
    if "01" in bits:
        raise Refused(400, f"Invalid mask for attribute '{where}': {value!r}")
    return f"{m.group(1)}/{bits.count('1')}"


def check_ace(seq: str, ace: Any) -> None:
    if not seq.isdigit() or not 1 <= int(seq) <= 4294967295:
        raise Refused(400, f"Invalid sequence number '{seq}'")
    if not isinstance(ace, dict):
        raise Refused(400, f"ACE {seq}: expected a JSON object")
    unknown = sorted(set(ace) - _ACE_ATTRS)
    if unknown:
        raise Refused(400, f"Attribute '{unknown[0]}' is not valid for ACE {seq}")
    if ace.get("action") not in ("permit", "deny"):
        raise Refused(400, f"Invalid value for attribute 'action' of ACE {seq}")
    proto = ace.get("protocol")
    if proto is not None and (not isinstance(proto, int) or not 0 <= proto <= 255):
        raise Refused(400, f"Invalid value for attribute 'protocol' of ACE {seq}")
    for side in ("src", "dst"):
        if ace.get(f"{side}_ip") is not None:
            _ip(ace[f"{side}_ip"], f"{side}_ip")
        for edge in ("min", "max"):
            port = ace.get(f"{side}_l4_port_{edge}")
            if port is not None and (
                proto not in (6, 17) or not isinstance(port, int) or not 0 <= port <= 65535
            ):
                raise Refused(400, f"Invalid value for attribute '{side}_l4_port_{edge}'")
    if ace.get("tcp_established") and proto != 6:
        raise Refused(400, f"ACE {seq}: 'tcp_established' requires protocol 6")
    note = ace.get("comment")
    if note is not None and (
        not isinstance(note, str) or len(note) > 256 or any(not c.isprintable() for c in note)
    ):
        raise Refused(400, f"Invalid value for attribute 'comment' of ACE {seq}")


def nft_rules(ace: dict[str, Any], tag: str) -> str:
    """One ACE as an nft rule of the twin's own table (permit: return to the next check)."""
    parts: list[str] = []
    proto = ace.get("protocol")
    if proto is not None:
        parts.append(f"ip protocol {proto}")
    for side, word in (("src", "saddr"), ("dst", "daddr")):
        if ace.get(f"{side}_ip") is not None:
            parts.append(f"ip {word} {_ip(ace[f'{side}_ip'], side)}")
        low, high = ace.get(f"{side}_l4_port_min"), ace.get(f"{side}_l4_port_max")
        l4 = "tcp" if proto == 6 else "udp"
        short = "sport" if side == "src" else "dport"
        if low is not None:
            parts.append(f"{l4} {short} {low}-{high if high is not None else low}")
    if ace.get("tcp_established"):
        parts.append("tcp flags & (ack | rst) != 0")
    parts.append("counter")
    parts.append("return" if ace["action"] == "permit" else "drop")
    parts.append(f'comment "{tag}"')
    return " ".join(parts)


class Switch:
    """The emulated switch: its configuration, sessions and auto checkpoint."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.lock = threading.RLock()
        self.kernel: dict[str, str] = dict(cfg["interfaces"])  # inventory name -> kernel name
        # a trunk port -> its per-VLAN legs in the namespace (no 802.1Q in the twin: one veth
        # per VLAN, each a member of its VLAN's bridge, fixed by the lab)
        self.trunks: dict[str, list[str]] = {
            k: list(v) for k, v in (cfg.get("trunks") or {}).items()
        }
        # VLAN id -> the kernel bridge that is that VLAN in the namespace
        self.bridges: dict[str, str] = {str(k): v for k, v in (cfg.get("bridges") or {}).items()}
        start = cfg.get("start") or {}  # the inventory's description, access VLAN, address
        self.interfaces: dict[str, dict[str, Any]] = {}
        for name in self.kernel:
            obj = self.defaults(name)
            given = start.get(name) or {}
            obj["description"] = given.get("description")
            if "vlan_tag" in obj and given.get("vlan") is not None:
                obj["vlan_tag"] = self.vlan_ref(int(given["vlan"]))
            if name in self.trunks:  # native VLAN 1 untagged, the site's VLANs tagged
                obj["vlan_mode"] = "native-untagged"
                obj["vlan_trunks"] = {
                    str(v): f"{API}/system/vlans/{v}" for v in given.get("trunk") or []
                }
            if "ip4_address" in obj:
                obj["ip4_address"] = given.get("address")
            self.interfaces[name] = obj
        self.acls: dict[str, dict[str, Any]] = {}
        self.sessions: set[str] = set()
        self.auto: dict[str, Any] | None = None  # the pending auto checkpoint
        self.checkpoints: list[tuple[str, str]] = []  # (name, date) of confirmed ones
        self.minute_s = float(cfg.get("minute_s", 60.0))

    # -- kernel effects -----------------------------------------------------------------------

    def _link(self, name: str) -> None:
        state = self.interfaces[name]["admin_state"]
        for kernel in self.trunks.get(name) or [self.kernel[name]]:
            subprocess.run(["ip", "link", "set", kernel, state], check=True)

    def _effects(self, name: str, old: dict[str, Any] | None) -> None:
        """Make the kernel show interface `name`'s configuration where it changed from `old`
        (None: everything): link state, a port's VLAN bridge, a VLAN interface's address."""
        new = self.interfaces[name]
        kernel = self.kernel[name]
        if old is None or old.get("admin_state") != new["admin_state"]:
            self._link(name)
        if name in self.trunks:
            return  # its legs' bridges are the lab's: a trunk's VLANs have no kernel effect here
        if "vlan_tag" in new and (old is None or old.get("vlan_tag") != new["vlan_tag"]):
            bridge = self.bridges.get(self._ref(new["vlan_tag"]) or "1")
            how = ["master", bridge] if bridge else ["nomaster"]
            subprocess.run(["ip", "link", "set", kernel, *how], check=True)
        if "ip4_address" in new and (old is None or old.get("ip4_address") != new["ip4_address"]):
            subprocess.run(["ip", "addr", "flush", "dev", kernel], check=True)
            if new["ip4_address"]:
                subprocess.run(["ip", "addr", "add", new["ip4_address"], "dev", kernel], check=True)

    def _nft(self) -> None:
        lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
        hooks: list[str] = []
        chains: list[str] = []
        for n, (name, obj) in enumerate(sorted(self.interfaces.items())):
            for attr, match in (
                ("aclv4_routed_in_cfg", "iifname"),
                ("aclv4_routed_out_cfg", "oifname"),
            ):
                key = self._ref(obj.get(attr))
                if key is None:
                    continue
                acl = self.acls[key]
                chain = f"{attr.split('_')[2]}_{n}"
                hooks.append(f'    {match} "{self.kernel[name]}" jump {chain}')
                body = [
                    "      " + nft_rules(ace, f"{acl['name']} {seq}")
                    for seq, ace in sorted(acl["cfg_aces"].items(), key=lambda kv: int(kv[0]))
                ]
                body.append(f'      counter drop comment "{acl["name"]} implicit deny"')
                chains += [f"  chain {chain} {{", *body, "  }"]
        lines += ["  chain forward {", "    type filter hook forward priority 0; policy accept;"]
        lines += [*hooks, "  }", *chains, "}"]
        subprocess.run(["nft", "-f", "-"], input="\n".join(lines) + "\n", text=True, check=True)

    def _ref(self, ref: Any) -> str | None:
        if not ref:
            return None
        key = next(iter(ref)) if isinstance(ref, dict) else str(ref).rsplit("/", 1)[-1]
        return str(key)

    def _link_states(self) -> dict[str, str]:
        out = subprocess.run(
            ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True
        )
        seen = {x["ifname"]: x.get("operstate", "") for x in json.loads(out.stdout or "[]")}
        return {
            name: "up"
            if any(seen.get(k) in ("UP", "UNKNOWN") for k in self.trunks.get(name) or [k])
            and self.interfaces[name]["admin_state"] == "up"
            else "down"
            for name, k in self.kernel.items()
        }

    # -- REST objects -------------------------------------------------------------------------

    def defaults(self, name: str) -> dict[str, Any]:
        """Every writable attribute of interface `name` at its default value."""
        extra = _VLAN_IF_DEFAULTS if _VLAN_IF.match(name) else _PORT_DEFAULTS
        if name in self.trunks:
            extra = extra | {"vlan_trunks": {}}  # {}: every VLAN
        return copy.deepcopy(_IF_DEFAULTS | extra)

    @staticmethod
    def vlan_ref(vid: int) -> dict[str, str]:
        return {str(vid): f"{API}/system/vlans/{vid}"}

    def interface(
        self, name: str, links: dict[str, str] | None = None, *, writable: bool = False
    ) -> dict[str, Any]:
        if name not in self.interfaces:
            raise Refused(404, "Object not found")
        if writable:  # `?selector=writable`: exactly the body a PUT takes
            return copy.deepcopy(self.interfaces[name])
        obj = {"name": name, **copy.deepcopy(self.interfaces[name])}
        obj["link_state"] = (links or self._link_states())[name]
        return obj

    def put_interface(self, name: str, body: Any) -> None:
        if name not in self.interfaces:
            raise Refused(404, "Object not found")
        if not isinstance(body, dict):
            raise Refused(400, "Malformed JSON body: expected an object")
        new = self.defaults(name)
        unknown = sorted(set(body) - set(new))
        if unknown:
            raise Refused(400, f"Attribute '{unknown[0]}' is not configurable")
        new.update(copy.deepcopy(body))  # PUT replaces every writable attribute: the rest reset
        if new["admin_state"] not in ("up", "down"):
            raise Refused(400, "Invalid value for attribute 'admin_state'")
        for attr in ("aclv4_routed_in_cfg", "aclv4_routed_out_cfg"):
            key = self._ref(new[attr])
            if key is not None and key not in self.acls:
                raise Refused(400, f"Invalid reference for attribute '{attr}': {key} not found")
        note = new["description"]
        if note is not None and (
            not isinstance(note, str) or len(note) > 64 or not note.isprintable()
        ):
            raise Refused(400, "Invalid value for attribute 'description'")
        if "vlan_tag" in new:
            tag = new["vlan_tag"]
            vid = self._ref(tag)
            if tag is not None and (
                not isinstance(tag, dict) or len(tag) != 1 or not str(vid).isdigit()
                or not 1 <= int(str(vid)) <= 4094
            ):  # fmt: skip
                raise Refused(400, "Invalid value for attribute 'vlan_tag'")
            if new["vlan_mode"] not in ("access", "native-untagged", "native-tagged"):
                raise Refused(400, "Invalid value for attribute 'vlan_mode'")
        if "ip4_address" in new and new["ip4_address"] is not None:
            m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3})/(\d{1,2})", str(new["ip4_address"]))
            octets = m.group(1).split(".") if m is not None else []
            if m is None or int(m.group(2)) > 32 or any(int(o) > 255 for o in octets):
                raise Refused(400, "Invalid value for attribute 'ip4_address'")
        old = self.interfaces[name]
        self.interfaces[name] = new
        self._effects(name, old)
        self._nft()

    def put_acl(self, key: str, body: Any, *, create: bool) -> None:
        m = _ACL_KEY.match(key)
        if m is None:
            raise Refused(400, f"Invalid ACL key '{key}'")
        if not isinstance(body, dict):
            raise Refused(400, "Malformed JSON body: expected an object")
        allowed = set(_ACL_DEFAULTS) | ({"name", "list_type"} if create else set())
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise Refused(400, f"Attribute '{unknown[0]}' is not configurable")
        if create and (body.get("name") != m.group("name") or body.get("list_type") != "ipv4"):
            raise Refused(400, "Attributes 'name' and 'list_type' are required")
        aces = body.get("cfg_aces") or {}
        if not isinstance(aces, dict):
            raise Refused(400, "Invalid value for attribute 'cfg_aces'")
        version = body.get("cfg_version", _ACL_DEFAULTS["cfg_version"])  # PUT: the rest reset
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise Refused(400, "Invalid value for attribute 'cfg_version'")
        for seq, ace in aces.items():
            check_ace(str(seq), ace)
        if create and key in self.acls:
            raise Refused(400, f"ACL {key} already exists")
        if not create and key not in self.acls:
            raise Refused(404, "Object not found")
        self.acls[key] = {
            "name": m.group("name"),
            "list_type": "ipv4",
            "cfg_aces": {str(s): dict(a) for s, a in aces.items()},
            "cfg_version": version,
        }
        self._nft()

    def delete_acl(self, key: str) -> None:
        if key not in self.acls:
            raise Refused(404, "Object not found")
        for name, obj in self.interfaces.items():
            if key in (
                self._ref(obj.get("aclv4_routed_in_cfg")),
                self._ref(obj.get("aclv4_routed_out_cfg")),
            ):
                raise Refused(400, f"ACL {key} is applied to interface {name}")
        del self.acls[key]
        self._nft()

    def running_config(self) -> dict[str, Any]:
        return {
            "System": {"hostname": self.cfg["hostname"]},
            "Interface": copy.deepcopy(self.interfaces),
            "ACL": copy.deepcopy(self.acls),
        }

    # -- checkpoint auto ----------------------------------------------------------------------

    def arm(self, minutes: int) -> str:
        if self.auto is not None:
            return "Auto checkpoint mode is already in progress"
        timer = threading.Timer(minutes * self.minute_s, self._expire)
        timer.daemon = True
        self.auto = {
            "snapshot": (copy.deepcopy(self.interfaces), copy.deepcopy(self.acls)),
            "timer": timer,
        }
        timer.start()
        return f"Auto checkpoint mode expires in {minutes} minute(s)"

    def _expire(self) -> None:
        with self.lock:
            if self.auto is None:
                return
            print("WARNING: Restoring configuration. Do NOT add any new configuration.", flush=True)
            self.interfaces, self.acls = self.auto["snapshot"]
            self.auto = None
            for name in self.interfaces:
                self._effects(name, None)
            self._nft()
            print("Restoration successful", flush=True)

    def confirm(self) -> str:
        if self.auto is None:
            return "No auto checkpoint is in progress"
        self.auto["timer"].cancel()
        self.auto = None
        now = time.gmtime()
        name = "AUTO" + time.strftime("%Y%m%d%H%M%S", now)
        self.checkpoints.append((name, time.strftime("%Y-%m-%dT%H:%M:%SZ", now)))
        return f"checkpoint {name} created"

    def show_checkpoint(self) -> str:
        rows = ["NAME                    TYPE        WRITER  DATE(YYYY/MM/DD)        IMAGE VERSION"]
        rows += [f"{n:<24}checkpoint  User    {d:<24}FL.10.09.1000" for n, d in self.checkpoints]
        return "\n".join(rows)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        code = args[1] if len(args) > 1 else ""
        sys.stdout.write(f"{self.command} {self.path.split('?')[0]} -> {code}\n")
        sys.stdout.flush()

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b""
        if body is not None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if not isinstance(body, str) else "text/plain"
        )
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> Any:
        try:
            return json.loads(self._body() or b"null")
        except json.JSONDecodeError as exc:
            raise Refused(400, f"Malformed JSON body: {exc.msg}") from None

    def _session(self) -> bool:
        cookie = self.headers.get("Cookie") or ""
        ids = re.findall(r"(?:^|;\s*)id=([0-9a-f]+)", cookie)
        return any(i in self.server.switch.sessions for i in ids)

    def _dispatch(self) -> None:
        sw = self.server.switch
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        if not path.startswith(API + "/"):
            self._body()
            raise Refused(404, "Not Found")
        rel = path[len(API) :]
        if rel == "/login" and self.command == "POST":
            form = urllib.parse.parse_qs(self._body().decode(errors="replace"))
            user = (form.get("username") or [""])[0]
            pwd = (form.get("password") or [""])[0]
            ok = hmac.compare_digest(
                user.encode(), sw.cfg["username"].encode()
            ) and hmac.compare_digest(pwd.encode(), sw.cfg["password"].encode())
            if not ok:
                raise Refused(401, "Login failed: incorrect username or password")
            sid = secrets.token_hex(16)
            with sw.lock:
                sw.sessions.add(sid)
            self._send(200, None, {"Set-Cookie": f"id={sid}; Path=/; HttpOnly; Secure"})
            return
        body = self._body() if self.command in ("PUT", "POST", "PATCH") else b""
        if not self._session():
            raise Refused(401, "Authorization Required")
        self._parsed = body
        with sw.lock:
            self._route(sw, rel, query, body)

    def _loads(self, body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except json.JSONDecodeError as exc:
            raise Refused(400, f"Malformed JSON body: {exc.msg}") from None

    def _route(self, sw: Switch, rel: str, query: dict[str, list[str]], body: bytes) -> None:  # noqa: PLR0912, PLR0915 - one router
        parts = [urllib.parse.unquote(p) for p in rel.strip("/").split("/")]
        method = self.command
        if parts == ["logout"] and method == "POST":
            cookie = self.headers.get("Cookie") or ""
            for sid in re.findall(r"id=([0-9a-f]+)", cookie):
                sw.sessions.discard(sid)
            self._send(200)
            return
        if parts == ["fullconfigs", "running-config"] and method == "GET":
            self._send(200, sw.running_config())
            return
        if parts == ["system", "interfaces"] and method == "GET":
            depth = (query.get("depth") or ["1"])[0]
            if depth == "1":
                self._send(
                    200,
                    {
                        n: f"{API}/system/interfaces/{urllib.parse.quote(n, safe='')}"
                        for n in sw.interfaces
                    },
                )
            else:
                links = sw._link_states()
                objs = {n: sw.interface(n, links) for n in sw.interfaces}
                wanted = (query.get("attributes") or [""])[0]
                if wanted:  # `attributes=a,b`: only those of each object
                    keep = set(wanted.split(","))
                    objs = {n: {k: v for k, v in o.items() if k in keep} for n, o in objs.items()}
                self._send(200, objs)
            return
        if len(parts) == 3 and parts[:2] == ["system", "interfaces"]:
            if method == "GET":
                selector = (query.get("selector") or [""])[0]
                self._send(200, sw.interface(parts[2], writable=selector == "writable"))
            elif method == "PUT":
                sw.put_interface(parts[2], self._loads(body))
                self._send(200)
            else:
                raise Refused(405, "Method Not Allowed")
            return
        if parts == ["system", "acls"]:
            if method == "GET":
                depth = (query.get("depth") or ["1"])[0]
                if depth == "1":
                    self._send(200, {k: f"{API}/system/acls/{k}" for k in sw.acls})
                else:
                    self._send(200, copy.deepcopy(sw.acls))
            elif method == "POST":
                data = self._loads(body)
                name = data.get("name") if isinstance(data, dict) else None
                sw.put_acl(f"{name},{data.get('list_type')}" if name else "", data, create=True)
                self._send(201)
            else:
                raise Refused(405, "Method Not Allowed")
            return
        if len(parts) == 3 and parts[:2] == ["system", "acls"]:
            key = parts[2]
            if method == "GET":
                if key not in sw.acls:
                    raise Refused(404, "Object not found")
                acl = copy.deepcopy(sw.acls[key])
                if (query.get("selector") or [""])[0] == "writable":
                    acl = {k: acl[k] for k in _ACL_DEFAULTS}
                self._send(200, acl)
            elif method == "PUT":
                sw.put_acl(key, self._loads(body), create=False)
                self._send(200)
            elif method == "DELETE":
                sw.delete_acl(key)
                self._send(204)
            else:
                raise Refused(405, "Method Not Allowed")
            return
        raise Refused(404, "Object not found")

    def _handle(self) -> None:
        try:
            self._dispatch()
        except Refused as exc:
            self._send(exc.status, exc.message)
        except subprocess.CalledProcessError as exc:
            self._send(500, f"Internal error: {exc}")

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _handle


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        super().__init__((switch.cfg["address"], int(switch.cfg["port"])), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(switch.cfg["cert"], switch.cfg["key"])
        self.ctx = ctx

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        return sock, addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls, client_address)


class Control(socketserver.ThreadingUnixStreamServer):
    """The CLI's way to the switch's checkpoint commands: one JSON line in, one out."""

    daemon_threads = True

    def __init__(self, path: str, switch: Switch) -> None:
        self.switch = switch
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, ControlHandler)
        os.chmod(path, 0o600)


class ControlHandler(socketserver.StreamRequestHandler):
    server: Control

    def handle(self) -> None:
        try:
            req = json.loads(self.rfile.readline() or b"{}")
        except json.JSONDecodeError:
            return
        sw = self.server.switch
        said: dict[str, Any] = {}
        with sw.lock:
            op = req.get("op")
            if op == "arm":
                minutes = int(req.get("minutes", 0))
                text = sw.arm(minutes)
                if text.startswith("Auto checkpoint mode expires"):  # armed: when to warn it
                    warn = max(minutes - 2, minutes / 2)  # the switch's minutes after the arm
                    said = {"warn_s": warn * sw.minute_s, "left": max(1, round(minutes - warn))}
            elif op == "confirm":
                text = sw.confirm()
            elif op == "show":
                text = sw.show_checkpoint()
            else:
                text = "Invalid input"
        self.wfile.write((json.dumps({"text": text, **said}) + "\n").encode())


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as fh:
        cfg = json.load(fh)
    switch = Switch(cfg)
    switch._nft()
    control = Control(cfg["ctl"], switch)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    server = Server(switch)
    print(f"aoscx twin API on {cfg['address']}:{cfg['port']}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
