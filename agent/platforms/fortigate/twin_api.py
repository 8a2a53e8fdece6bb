"""Owns the fortigate twin's emulated FortiOS REST API (run as `python -m` in the device's
namespace by `twin.start`): the subset Cordon uses, with the documented envelopes and errors
(`fixtures/`), a running and a saved configuration (persisted in the node's directory), whose
effects are real there as soon as each write is accepted (as FortiOS applies a cmdb change at
once): its policy and local-in policy tables become the namespace's own nftables (`twin_nft`;
only a write that changes the filtering reloads it), an interface's status `down` takes the
kernel link down, and in `cfg-save revert` mode unsaved
changes really revert to the saved configuration `cfg-revert-timeout` seconds after the last
one (FortiOS reboots to its saved configuration; the twin reloads it, its sessions kept).
Imports only the standard library and `twin_nft`; never Cordon's renderer or planner."""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.platforms.fortigate import twin_nft

FIXTURES = Path(__file__).with_name("fixtures")
IDENT = {"serial": "FGVMEVTWIN000001", "version": "v7.2.8", "build": 1639}
TABLES = {  # cmdb path -> (config key, mkey field)
    "firewall/address": ("address", "name"),
    "firewall.service/custom": ("service", "name"),
    "firewall/policy": ("policy", "policyid"),
    "firewall/local-in-policy": ("local-in-policy", "policyid"),
    "system/interface": ("interface", "name"),
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


class ApiError(Exception):
    def __init__(self, status: int, error: int | None = None) -> None:
        super().__init__(status)
        self.status, self.error = status, error


class Device:
    """The emulated FortiGate's configuration and its effects (one lock: one change at a time)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.lock = threading.RLock()
        data = json.loads((directory / "fortigate.json").read_text())
        self.running: dict[str, Any] = data["running"]
        self.saved: dict[str, Any] = data.get("saved") or copy.deepcopy(self.running)
        for conf in (self.running, self.saved):
            conf.setdefault("local-in-policy", [])
        self.glob: dict[str, Any] = data.get("global") or {
            "cfg-save": "automatic",
            "cfg-revert-timeout": 600,
        }
        self.hits: dict[str, int] = data.get("hits", {})
        self.timer: threading.Timer | None = None
        # what the kernel holds: the filtering last loaded, each link's admin status
        self.loaded: twin_nft.Ruleset | None = None
        self.links: dict[str, str] = {}
        # changes made real so far (each under the lock): a policy lookup, which asks the
        # kernel's route outside the lock, sees by it whether its tables and route are of one
        # moment
        self.version = 0
        self.effects()

    # -- persistence and effects -----------------------------------------------------------------

    def persist(self) -> None:
        data = {
            "running": self.running,
            "saved": self.saved,
            "global": self.glob,
            "hits": self.hits,
        }
        tmp = self.dir / "fortigate.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / "fortigate.json")

    def revision(self) -> str:
        return hashlib.md5(json.dumps(self.running, sort_keys=True).encode()).hexdigest()  # noqa: S324

    def counters(self) -> dict[int, int]:
        return twin_nft.hit_counts(self.counter_json())

    def counter_json(self) -> str:
        done = subprocess.run(
            ["nft", "-j", "list", "counters", "table", "inet", twin_nft.TABLE],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout if done.returncode == 0 else ""

    def effects(self) -> None:
        """The running configuration made real, as FortiOS applies a change at once: the policy
        and local-in tables as nftables, every interface's admin status as the kernel link's.
        Only what differs from what the kernel holds is sent (a write that changes no packet
        verdict, say an address no policy names yet, loads nothing); a reload keeps the hit
        counts of the policies still there and drops those of policies gone."""
        self.version += 1
        r = self.running
        new = twin_nft.ruleset(
            r["policy"],
            r["local-in-policy"],
            {a["name"]: a for a in r["address"]},
            {s["name"]: s for s in r["service"]},
        )
        if self.loaded is None:  # first load: counts from an earlier run of this twin kept
            for pid, n in self.counters().items():
                self.hits[str(pid)] = self.hits.get(str(pid), 0) + n
        if new != self.loaded:
            script = twin_nft.script(new, self.loaded)
            subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
            self.loaded = new
        for i in r["interface"]:
            status = i.get("status", "up")
            if self.links.get(i["name"]) != status:
                subprocess.run(
                    ["ip", "link", "set", "dev", i["name"], status],
                    capture_output=True,
                    check=False,
                )
                self.links[i["name"]] = status
        self.persist()

    def changed(self) -> None:
        """After a configuration change: effects, then saved at once (automatic) or left
        unsaved with the revert timer (re)started (revert mode)."""
        self.effects()
        mode = self.glob.get("cfg-save")
        if mode == "automatic":
            self.save()
        elif mode == "revert":
            self.arm()

    def arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = threading.Timer(float(self.glob["cfg-revert-timeout"]), self.revert)
        self.timer.daemon = True
        self.timer.start()

    def save(self) -> bool:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        unsaved = self.saved != self.running
        self.saved = copy.deepcopy(self.running)
        self.persist()
        return unsaved

    def revert(self) -> None:
        with self.lock:
            self.timer = None
            if self.saved == self.running:
                return
            self.running = copy.deepcopy(self.saved)
            self.effects()
            print(
                f"{time.strftime('%H:%M:%S')} logid 0100032001 36881 "
                "Configuration reverted due to timeout",
                flush=True,
            )

    # -- cmdb ------------------------------------------------------------------------------------

    def table(self, path: str) -> tuple[list[dict[str, Any]], str]:
        if path not in TABLES:
            raise ApiError(404)
        key, mkey = TABLES[path]
        rows: list[dict[str, Any]] = self.running[key]
        return rows, mkey

    def find(self, path: str, mkey: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows, field = self.table(path)
        for r in rows:
            if str(r[field]) == mkey:
                return rows, r
        raise ApiError(404)

    def check(self, path: str, obj: dict[str, Any]) -> None:  # noqa: PLR0912 - FortiOS checks
        """FortiOS's refusals for this subset: invalid values (-651), references to objects
        that do not exist (424, -3)."""
        if path == "firewall/local-in-policy":
            intf = obj.get("intf")
            if obj.get("action", "deny") not in ("accept", "deny") or not isinstance(intf, str):
                raise ApiError(500, -651)  # 7.0/7.2: intf is one name, not a list
            if intf not in [i["name"] for i in self.running["interface"]] + ["any"]:
                raise ApiError(424, -3)
            if obj.get("schedule", "always") != "always":
                raise ApiError(424, -3)
            self.check_refs(obj, ("srcaddr", "dstaddr", "service"))
            if len(str(obj.get("comments", ""))) > 1023:
                raise ApiError(500, -651)
        elif path == "firewall/policy":
            if obj.get("action") not in ("accept", "deny"):
                raise ApiError(500, -651)
            self.check_refs(obj, ("srcintf", "dstintf", "srcaddr", "dstaddr", "service"))
            if len(str(obj.get("name", ""))) > 35 or len(str(obj.get("comments", ""))) > 1023:
                raise ApiError(500, -651)
        elif path == "firewall/address":
            sub = str(obj.get("subnet", ""))
            parts = sub.split()
            if len(parts) != 2 or not str(obj.get("name", "")):
                raise ApiError(500, -651)
        elif path == "firewall.service/custom":
            if not str(obj.get("tcp-portrange", "")).split(":")[0].isdigit():
                raise ApiError(500, -651)
        elif path == "system/interface" and obj.get("status", "up") not in ("up", "down"):
            raise ApiError(500, -651)

    def check_refs(self, obj: dict[str, Any], keys: tuple[str, ...]) -> None:
        """Each of `keys` a non-empty list of {"name": ...} naming objects that exist (-651
        malformed, 424 / -3 an unknown one)."""
        r = self.running
        interfaces = [i["name"] for i in r["interface"]] + ["any"]
        known = {
            "srcintf": interfaces,
            "dstintf": interfaces,
            "srcaddr": [a["name"] for a in r["address"]] + ["all"],
            "dstaddr": [a["name"] for a in r["address"]] + ["all"],
            "service": [s["name"] for s in r["service"]] + ["ALL"],
        }
        for key in keys:
            val = obj.get(key)
            if not isinstance(val, list) or not val:
                raise ApiError(500, -651)
            for ref in val:
                name = ref.get("name") if isinstance(ref, dict) else None
                if not isinstance(name, str):
                    raise ApiError(500, -651)
                if name not in known[key]:
                    raise ApiError(424, -3)

    def post(self, path: str, body: dict[str, Any]) -> str:
        rows, field = self.table(path)
        if path == "system/interface":
            raise ApiError(405)
        obj = dict(body)
        if field == "policyid":
            pid = int(obj.get("policyid") or 0)
            if pid == 0:
                pid = max([int(r["policyid"]) for r in rows] + [0]) + 1
            obj["policyid"] = pid
            obj.setdefault("status", "enable")
            obj.setdefault("schedule", "always")
            if path == "firewall/local-in-policy":
                obj.setdefault("action", "deny")  # FortiOS's default for a local-in policy
        if any(str(r[field]) == str(obj.get(field)) for r in rows) or not obj.get(field):
            raise ApiError(500, -5 if obj.get(field) else -651)
        self.check(path, obj)
        rows.append(obj)  # a new policy goes last, before the implicit deny
        self.changed()
        return str(obj[field])

    def put(self, path: str, mkey: str, body: dict[str, Any], query: dict[str, str]) -> str:
        rows, obj = self.find(path, mkey)
        if query.get("action") == "move":
            other = query.get("before") or query.get("after")
            if other is None:
                raise ApiError(500, -651)
            _, peer = self.find(path, other)
            rows.remove(obj)
            at = rows.index(peer) + (0 if "before" in query else 1)
            rows.insert(at, obj)
        else:
            new = {**obj, **body}
            self.check(path, new)
            obj.clear()
            obj.update(new)
        self.changed()
        return mkey

    def delete(self, path: str, mkey: str) -> None:
        rows, _obj = self.find(path, mkey)
        field = TABLES[path][1]
        if path in ("firewall/address", "firewall.service/custom"):
            used = any(
                mkey in [r.get("name") for r in p.get(k, [])]
                for p in [*self.running["policy"], *self.running["local-in-policy"]]
                for k in ("srcaddr", "dstaddr", "service")
            )
            if used:
                raise ApiError(500, -23)  # entry is used
        rows[:] = [r for r in rows if str(r[field]) != mkey]
        if path == "firewall/policy":
            self.hits.pop(mkey, None)  # a deleted policy's counts go with it
        self.changed()

    def backup(self) -> str:
        """The configuration as FortiOS's CLI text (`show full-configuration` style)."""
        r = self.running
        out = [
            f"#config-version=FGVM64-7.2.8-FW-build1639:opmode=0:vdom=0:rev={self.revision()}",
            "config system global",
            f"    set cfg-save {self.glob['cfg-save']}",
            f"    set cfg-revert-timeout {self.glob['cfg-revert-timeout']}",
            "end",
            "config system interface",
        ]
        for i in r["interface"]:
            out += [
                f'    edit "{i["name"]}"',
                f"        set status {i.get('status', 'up')}",
                "    next",
            ]
        out += ["end", "config firewall address"]
        for a in r["address"]:
            out += [f'    edit "{a["name"]}"', f"        set subnet {a['subnet']}", "    next"]
        out += ["end", "config firewall service custom"]
        for s in r["service"]:
            out += [
                f'    edit "{s["name"]}"',
                f"        set tcp-portrange {s['tcp-portrange']}",
                "    next",
            ]
        out += ["end", "config firewall policy"]
        for p in r["policy"]:
            out.append(f"    edit {p['policyid']}")
            out.append(f'        set name "{p.get("name", "")}"')
            for k in ("srcintf", "dstintf", "srcaddr", "dstaddr", "service"):
                vals = " ".join(f'"{v["name"]}"' for v in p.get(k, []))
                out.append(f"        set {k} {vals}")
            out.append(f"        set action {p.get('action')}")
            out.append(f"        set status {p.get('status', 'enable')}")
            out.append(f'        set comments "{p.get("comments", "")}"')
            out.append("    next")
        out += ["end", "config firewall local-in-policy"]
        for p in r["local-in-policy"]:
            out.append(f"    edit {p['policyid']}")
            out.append(f'        set intf "{p.get("intf", "")}"')
            for k in ("srcaddr", "dstaddr", "service"):
                vals = " ".join(f'"{v["name"]}"' for v in p.get(k, []))
                out.append(f"        set {k} {vals}")
            out.append(f"        set action {p.get('action', 'deny')}")
            out.append(f'        set schedule "{p.get("schedule", "always")}"')
            out.append(f"        set status {p.get('status', 'enable')}")
            out.append(f'        set comments "{p.get("comments", "")}"')
            out.append("    next")
        out.append("end")
        return "\n".join(out) + "\n"


class Handler(BaseHTTPRequestHandler):
    device: Device
    token: str
    protocol_version = "HTTP/1.1"
    # an answer goes out as its headers then its body, two writes: without TCP_NODELAY the
    # body waits for the client's delayed ACK of the headers (40 ms a request on Linux), a
    # cost of this emulator, not of a FortiGate
    disable_nagle_algorithm = True
    shaken = False
    handshake_timeout = 30.0  # seconds a connection may take to complete its TLS handshake

    def setup(self) -> None:
        """The TLS handshake, in this connection's own thread (not the accepting one): a
        FortiGate takes several connections' handshakes at once, and one client that stalls in
        its handshake holds up no other."""
        super().setup()
        try:
            # a client that never sends its ClientHello holds this thread and socket no longer
            self.request.settimeout(self.handshake_timeout)
            self.request.do_handshake()
            self.request.settimeout(None)
            self.shaken = True
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def handle(self) -> None:
        if self.shaken:
            super().handle()

    def log_message(self, fmt: str, *args: Any) -> None:  # method and path only
        code = args[1] if len(args) > 1 else ""
        sys.stdout.write(f"{self.command} {self.path.split('?')[0]} -> {code}\n")
        sys.stdout.flush()

    def send(self, status: int, body: dict[str, Any] | str) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        ctype = "text/plain" if isinstance(body, str) else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error_envelope(self, status: int, error: int | None, where: dict[str, Any]) -> None:
        base = {401: "error_401", 404: "error_404", 424: "error_424"}.get(status, "error_500")
        env = fixture(base)
        env.update(where, http_method=self.command, http_status=status)
        env.pop("mkey", None)
        if status == 404 and "mkey" in where:
            env["mkey"] = where["mkey"]
        if error is not None:
            env["error"] = error
        else:
            env.pop("error", None)
        self.send(status, env)

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def do_PUT(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        auth = self.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            self.error_envelope(401, None, {})
            return
        parts = url.path.split("/")  # ['', 'api', 'v2', 'cmdb'|'monitor', ...]
        if parts[:3] != ["", "api", "v2"] or len(parts) < 5:
            self.error_envelope(404, None, {})
            return
        kind, rest = parts[3], "/".join(parts[4:])
        body: Any = {}
        if raw:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self.error_envelope(400, None, {})
                return
            if not isinstance(body, dict):
                self.error_envelope(500, -651, {})
                return
        dev = self.device
        if kind == "monitor" and rest == "firewall/policy-lookup" and self.command == "GET":
            # a read served alongside other requests, as FortiOS serves concurrent REST
            # sessions: only the copy of the tables it reads is taken under the lock, the route
            # lookup (a process) runs outside it (again if a change came in between)
            try:
                self.send(
                    200,
                    {
                        **fixture("monitor_firewall_policy_lookup"),
                        **IDENT,
                        "results": policy_lookup(dev, query),
                    },
                )
            except ApiError as exc:
                self.failed(dev, rest, exc)
            return
        with dev.lock:
            try:
                if kind == "cmdb":
                    self.cmdb(dev, rest, body, query)
                elif kind == "monitor":
                    self.monitor(dev, rest, query)
                else:
                    raise ApiError(404)
            except ApiError as exc:
                self.failed(dev, rest, exc)

    def failed(self, dev: Device, rest: str, exc: ApiError) -> None:
        path, _, mkey = rest.rpartition("/") if rest not in TABLES else (rest, "", "")
        with dev.lock:
            where = {"vdom": "root", "revision": dev.revision()}
        if path in TABLES:
            where |= {"path": path.split("/")[0], "name": path.split("/")[-1]}
            if mkey:
                where["mkey"] = urllib.parse.unquote(mkey)
        self.error_envelope(exc.status, exc.error, where)

    def cmdb(self, dev: Device, rest: str, body: dict[str, Any], query: dict[str, str]) -> None:
        if rest == "system/global":
            if self.command == "GET":
                self.send(
                    200,
                    {
                        **fixture("envelope_cmdb_get"),
                        "results": dict(dev.glob),
                        "path": "system",
                        "name": "global",
                        "size": 1,
                        "revision": dev.revision(),
                        **IDENT,
                    },
                )
                return
            if self.command != "PUT":
                raise ApiError(405)
            mode = body.get("cfg-save", dev.glob["cfg-save"])
            timeout = body.get("cfg-revert-timeout", dev.glob["cfg-revert-timeout"])
            if (
                mode not in ("automatic", "manual", "revert")
                or not isinstance(timeout, int)
                or timeout < 10
            ):
                raise ApiError(500, -651)
            dev.glob.update({"cfg-save": mode, "cfg-revert-timeout": timeout})
            if mode == "automatic":
                dev.save()
            dev.persist()
            self.ok_write(dev, "system/global", "")
            return
        if rest in TABLES:
            path, mkey = rest, None
        else:
            path, _, m = rest.rpartition("/")
            mkey = urllib.parse.unquote(m)
        rows, _field = dev.table(path)
        if self.command == "GET":
            found = rows if mkey is None else [dev.find(path, mkey)[1]]
            env = fixture("envelope_cmdb_get")
            env.update(
                results=copy.deepcopy(found),
                size=len(found),
                matched_count=len(found),
                next_idx=len(found) - 1,
                revision=dev.revision(),
                path=path.split("/")[0],
                name=path.split("/")[-1],
                **IDENT,
            )
            self.send(200, env)
            return
        if self.command == "POST" and mkey is None:
            self.ok_write(dev, path, dev.post(path, body))
        elif self.command == "PUT" and mkey is not None:
            self.ok_write(dev, path, dev.put(path, mkey, body, query))
        elif self.command == "DELETE" and mkey is not None:
            dev.delete(path, mkey)
            self.ok_write(dev, path, mkey)
        else:
            raise ApiError(405)

    def ok_write(self, dev: Device, path: str, mkey: str) -> None:
        env = fixture("envelope_cmdb_post")
        env.update(
            http_method=self.command,
            mkey=mkey,
            revision=dev.revision(),
            path=path.split("/", maxsplit=1)[0],
            name=path.rsplit("/", maxsplit=1)[-1],
            **IDENT,
        )
        self.send(200, env)

    def monitor(self, dev: Device, rest: str, query: dict[str, str]) -> None:
        base = {
            "http_method": self.command,
            "vdom": "root",
            "status": "success",
            "http_status": 200,
            **IDENT,
        }
        if rest == "system/config/backup" and self.command == "GET":
            self.send(200, dev.backup())
        elif rest == "system/config/save" and self.command == "POST":
            dev.save()
            self.send(
                200, {**base, "path": "system", "name": "config", "action": "save", "results": {}}
            )
        elif rest == "system/status" and self.command == "GET":
            self.send(
                200,
                {
                    **base,
                    "path": "system",
                    "name": "status",
                    "results": {
                        "model_name": "FortiGate",
                        "model": "FGVM64",
                        "hostname": dev.dir.name,
                    },
                },
            )
        elif rest == "system/interface" and self.command == "GET":
            res: dict[str, dict[str, Any]] = {}
            for i in dev.running["interface"]:
                st = Path(f"/sys/class/net/{i['name']}/carrier")
                try:
                    link = st.read_text().strip() == "1"
                except OSError:
                    link = False
                res[i["name"]] = {"id": i["name"], "name": i["name"], "link": link}
            self.send(200, {**base, "path": "system", "name": "interface", "results": res})
        elif rest == "firewall/policy" and self.command == "GET":
            raw = dev.counter_json()
            now, moved = twin_nft.hit_counts(raw), twin_nft.traffic_counts(raw)
            hits: list[dict[str, Any]] = [
                {"policyid": 0, "active_sessions": 0, "bytes": 0, "packets": 0}
            ]
            for p in dev.running["policy"]:
                pid = int(p["policyid"])
                hits.append(
                    {
                        "policyid": pid,
                        "hit_count": dev.hits.get(str(pid), 0) + now.get(pid, 0),
                        "bytes": moved.get(pid, (0, 0))[1],
                        "packets": moved.get(pid, (0, 0))[0],
                        "active_sessions": 0,
                    }
                )
            self.send(200, {**fixture("monitor_firewall_policy"), "results": hits, **IDENT})
        else:
            raise ApiError(404)


LOOKUP_TRIES = 3  # a policy lookup's route asked outside the lock, at most, before under it


def route_of(dest: str) -> str | None:
    """The interface this namespace's kernel routes `dest` out of; None: no route."""
    done = subprocess.run(
        ["ip", "-j", "route", "get", dest], capture_output=True, text=True, check=False
    )
    routes = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []
    if not routes or "dev" not in routes[0]:
        return None
    return str(routes[0]["dev"])


def policy_lookup(dev: Device, query: dict[str, str]) -> dict[str, Any]:
    """`monitor/firewall/policy-lookup`: the policy a dummy packet would hit, as FortiOS asks
    its kernel. The route to `dest` (the outgoing interface) from this namespace's kernel, then
    the running policy table, first match (`twin_nft.lookup`, 0: the implicit deny). No route:
    `success` false, as FortiOS answers. TCP only (protocol `tcp` or 6); `srcintf`, `dest`,
    `protocol` required (424 otherwise, FortiOS's error for a missing parameter)."""
    if not all(query.get(k) for k in ("srcintf", "dest", "protocol")):
        raise ApiError(424, -5)
    if query["protocol"] not in ("tcp", "6"):
        return {"success": False}
    try:
        dest = str(ipaddress.IPv4Address(query["dest"]))
        src = str(ipaddress.IPv4Address(query.get("sourceip") or "0.0.0.0"))  # noqa: S104 - a value
        port = int(query.get("destport") or 0)
    except ValueError:
        raise ApiError(424, -5) from None
    # the tables copied under the lock, the route asked outside it (a process), and both kept
    # only if no change was made in between (else asked again; the last time under the lock)
    for attempt in range(LOOKUP_TRIES + 1):
        with dev.lock:
            seen = dev.version
            policies = copy.deepcopy(dev.running["policy"])
            addresses = {a["name"]: copy.deepcopy(a) for a in dev.running["address"]}
            services = {s["name"]: copy.deepcopy(s) for s in dev.running["service"]}
            if attempt == LOOKUP_TRIES:
                out_if = route_of(dest)
                break
        out_if = route_of(dest)
        with dev.lock:
            if dev.version == seen:
                break
    if out_if is None:
        return {"success": False}
    pid = twin_nft.lookup(
        policies,
        addresses,
        services,
        srcintf=query["srcintf"],
        dstintf=out_if,
        src=src,
        dst=dest,
        port=port,
    )
    return {"success": True, "policy_id": pid, "destip": dest}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="fortigate-twin-api")
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token-file", type=Path, required=True)
    args = ap.parse_args(argv)
    Handler.device = Device(args.dir)
    Handler.token = args.token_file.read_text().strip()
    server = ThreadingHTTPServer((args.address, args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
