"""A benchmark-only fleet of synthetic devices for the daemon's poller, on top of the running twin.

The twin cannot run 500 real devices, so the fleet is ONE extra namespace attached to the twin's
out-of-band management bridge, holding the management addresses of every device of a synthetic
inventory (`scripts.synth.synthetic`), moved into 198.19.64.0/18 so none collides with the
twin's. ONE snmpd and ONE sshd (one host key) serve them all: they listen on the fleet's service
address, and a DNAT rule inside the fleet namespace sends every device address's SNMP and SSH
there (replies leave from the address that was asked, as from 500 devices). Started with
`agent.lab.daemons`, with the twin's own secrets: its SSH client key (authorized), its SNMPv3
passphrases. The fleet namespace also holds interfaces named like the watched ones (switch ports
gi1/gi2 shut, firewall links up) and a `table inet cordon` as the fleet's recorded state says,
so a poll reads a fleet that matches its record.

Everything made is journaled in /run/cordon-fleet/state.json before it is made; `down()` (and
`python -m benchmarks.fleet --down` after a crash) stops exactly the recorded PIDs and removes
the namespace (its veth leaves the twin's bridge with it), the files and the directory.

`on_twin(sites, per_site)` is the benchmarks' one way in: the twin lock held, the example twin
brought up if none is (and down after), the fleet up, its inventory yielded, the fleet always
taken down.

Safety: every address is checked to lie in the twin's management network (198.19.0.0/16, inside
198.18.0.0/15) before anything is created; the root namespace reaches the fleet only through the
twin's `cordon-oob` veth, like any twin device.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import LabError, SafetyError
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import daemons, netns
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint, ns_name
from agent.network.state import DeviceState, NftRule
from agent.platforms.linux_nftables import render
from agent.secrets import ref_path, resolve
from scripts.synth import synthetic

EXAMPLE = Path(__file__).resolve().parents[1] / "inventory" / "hospi-grand-ouest.yaml"
FLEET_ROOT = Path("/run/cordon-fleet")
STATE_FILE = FLEET_ROOT / "state.json"
FLEET_NET = ipaddress.IPv4Network("198.19.64.0/18")  # inside the twin's management /16
SERVICE = ipaddress.IPv4Address("198.19.64.1")  # where the one sshd and the one snmpd listen
OOB_PORT = "fleet0"  # the fleet's port on the twin's oob bridge
MGMT_IF = "mgmt0"
SHUT_PORTS = ("gi1", "gi2")  # every fleet switch records these two ports shut (by SNMP)
LINK_KINDS = ("inet0", "wan0", "vpn0", "vnd0")


def firewall_state() -> DeviceState:
    """What every fleet firewall records: its four links cut by drop rules (both ways)."""
    return DeviceState().with_rules(
        rule
        for ifname in LINK_KINDS
        for rule in (
            NftRule("drop", iif=ifname, tag=f"cut-{ifname}"),
            NftRule("drop", oif=ifname, tag=f"cut-{ifname}"),
        )
    )


def switch_state() -> DeviceState:
    """What every fleet switch records: two ports shut by SNMP."""
    state = DeviceState()
    for port in SHUT_PORTS:
        state = state.shut(port, "snmp")
    return state


def fleet_states(inv: Inventory) -> dict[str, DeviceState]:
    """The recorded isolation state of every fleet device: a whole group isolated (the
    heaviest poll: every device is read)."""
    fw, sw = firewall_state(), switch_state()
    return {d.name: fw if d.platform == "linux_nftables" else sw for _, d in inv.devices()}


@dataclass
class FleetState:
    ns: str
    oob_ns: str
    dir: str
    inventory: str = ""
    procs: list[dict[str, Any]] = field(default_factory=list)
    devices: int = 0

    def save(self) -> None:
        FLEET_ROOT.mkdir(mode=0o700, exist_ok=True)
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        os.replace(tmp, STATE_FILE)

    @classmethod
    def load(cls) -> FleetState | None:
        try:
            return cls(**json.loads(STATE_FILE.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None


def _twin_addresses(bp: Blueprint) -> set[ipaddress.IPv4Address]:
    used = {a.cidr.ip for a in bp.addresses}
    if bp.root_address is not None:
        used.add(bp.root_address.ip)
    return used


def fleet_document(
    twin_inv: Inventory, bp: Blueprint, n_sites: int, per_site: int
) -> dict[str, Any]:
    """The synthetic inventory of the fleet: addresses moved into FLEET_NET, the twin's secret
    files referenced by absolute path, the fleet's pins in its own known_hosts."""
    doc = synthetic(n_sites, per_site)
    base = Path(twin_inv.path).parent
    ssh = twin_inv.group.defaults.ssh
    snmp = twin_inv.group.defaults.snmp
    if ssh is None or snmp is None or ssh.key is None or snmp.auth is None or snmp.priv is None:
        raise LabError("the twin's inventory has no default SSH key or SNMPv3 secrets to reuse")
    doc["group"]["defaults"]["ssh"]["key"] = f"file:{ref_path(ssh.key, base)}"
    doc["group"]["defaults"]["snmp"]["auth"] = f"file:{ref_path(snmp.auth, base)}"
    doc["group"]["defaults"]["snmp"]["priv"] = f"file:{ref_path(snmp.priv, base)}"
    doc["group"]["defaults"]["snmp"]["user"] = snmp.user
    doc["group"]["known_hosts"] = "known_hosts"
    if bp.mgmt_subnet is None or not FLEET_NET.subnet_of(bp.mgmt_subnet):
        raise SafetyError(f"the twin's management network does not hold {FLEET_NET}")
    twin = _twin_addresses(bp)
    offset = int(FLEET_NET.network_address) - int(ipaddress.IPv4Address("198.19.0.0"))
    for site in doc["sites"]:
        for dev in site.get("devices", ()):
            addr = ipaddress.IPv4Address(dev["management"]["address"]) + offset
            if addr not in FLEET_NET or addr in twin or addr == SERVICE:
                raise SafetyError(
                    f"fleet address {addr} of {dev['name']} is not free in {FLEET_NET}"
                )
            dev["management"]["address"] = str(addr)
    return doc


def up(
    twin_inv: Inventory, bp: Blueprint, twin: LabState, n_sites: int, per_site: int
) -> Inventory:
    """Build the fleet on the running twin; returns its inventory. Undone by `down()`."""
    if FleetState.load() is not None:
        raise LabError("a fleet is already up: `python -m benchmarks.fleet --down` first")
    oob = ns_name(bp.lab, "oob")
    ns = f"{bp.lab}-fleet"
    if netns.exists(ns):
        raise LabError(f"namespace {ns} exists but no fleet state records it")
    if netns.run(["ip", "link", "show", OOB_PORT], netns=oob, check=False).returncode == 0:
        raise LabError(f"{OOB_PORT} already exists on the twin's oob bridge")
    doc = fleet_document(twin_inv, bp, n_sites, per_site)
    st = FleetState(ns=ns, oob_ns=oob, dir=str(FLEET_ROOT / "files"))
    st.save()  # journal first
    try:
        _build(twin_inv, twin, doc, st)
    except BaseException:
        down()
        raise
    return load(st.inventory)


def _build(twin_inv: Inventory, twin: LabState, doc: dict[str, Any], st: FleetState) -> None:
    """Namespace, addresses, interfaces, NAT and table, keys and pins, inventory, daemons."""
    d = Path(st.dir)
    d.mkdir(mode=0o700)
    addresses = [
        dev["management"]["address"] for site in doc["sites"] for dev in site.get("devices", ())
    ]
    for a in [*addresses, str(SERVICE)]:
        netns.check_twin_address(a, "fleet address")
    # the namespace, its port on the twin's oob bridge, the addresses (one `ip -b` each)
    netns.run(["ip", "netns", "add", st.ns])
    netns.run(
        ["ip", "link", "add", MGMT_IF, "netns", st.ns, "type", "veth", "peer", "name", OOB_PORT,
         "netns", st.oob_ns]
    )  # fmt: skip
    netns.run(["ip", "link", "set", OOB_PORT, "master", "br0", "up"], netns=st.oob_ns)
    prefix = ipaddress.IPv4Network(doc["group"]["management"]["subnet"]).prefixlen
    lines = [
        "link set lo up",
        f"link set {MGMT_IF} up",
        f"addr add {SERVICE}/{prefix} dev {MGMT_IF}",
    ]
    lines += [f"addr add {a}/{prefix} dev {MGMT_IF}" for a in addresses]
    # interfaces named like the watched ones: shut ports down, links (and the core's) up
    peers = [
        link["peer_interface"]
        for site in doc["sites"]
        for link in site.get("links", ())
        if "peer_interface" in link
    ]
    for name in [*SHUT_PORTS, *LINK_KINDS, *sorted(set(peers))]:
        lines.append(f"link add {name} type bridge")
        if name not in SHUT_PORTS:
            lines.append(f"link set {name} up")
    batch = d / "fleet.ip"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = netns.run(["ip", "-n", st.ns, "-b", str(batch)], check=False, timeout=120)
    if done.returncode != 0:
        raise LabError(f"building the fleet failed: {done.stderr.strip()}")
    # every device address's SSH and SNMP goes to the one sshd and the one snmpd
    nat = (
        "table ip fleet_nat {\n  chain pre {\n    type nat hook prerouting priority -100;\n"
        f"    ip daddr != {SERVICE} tcp dport 22 dnat to {SERVICE}\n"
        f"    ip daddr != {SERVICE} udp dport 161 dnat to {SERVICE}\n  }}\n}}\n"
    )
    netns.run(["nft", "-f", "-"], netns=st.ns, input=nat)
    # the fleet's firewalls all show the table their record holds
    netns.run(["nft", "-f", "-"], netns=st.ns, input=render.nft_table(firewall_state()))
    # keys and pins: one host key for the fleet, pinned for every device address
    host_key = d / "ssh_host_ed25519_key"
    public = daemons.gen_ssh_host_key(host_key, "cordon-fleet-host")
    (d / "known_hosts").write_text(
        "".join(public.known_hosts_line(a) + "\n" for a in addresses), encoding="utf-8"
    )
    os.chmod(d / "known_hosts", 0o600)
    inventory = d / "fleet.yaml"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    st.inventory = str(inventory)
    st.devices = len(addresses)
    st.save()
    authorized = twin.dir / "authorized_keys"
    sshd = daemons.start_sshd(
        st.ns,
        d / "sshd",
        "fleet",
        str(SERVICE),
        host_key_path=host_key,
        authorized_keys_path=authorized,
        max_startups=128,
    )
    st.procs.append(sshd.as_dict())
    st.save()
    snmp = twin_inv.group.defaults.snmp
    assert snmp is not None and snmp.user and snmp.auth and snmp.priv
    base = Path(twin_inv.path).parent
    snmpd = daemons.start_snmpd(
        st.ns,
        d / "snmpd",
        "fleet",
        str(SERVICE),
        user=snmp.user,
        auth_pass=resolve(snmp.auth, base_dir=base, what="fleet snmpd"),
        priv_pass=resolve(snmp.priv, base_dir=base, what="fleet snmpd"),
    )
    st.procs.append(snmpd.as_dict())
    st.save()


def down() -> list[str]:
    """Undo what the fleet's state records: processes by PID, the namespace, the files."""
    st = FleetState.load()
    if st is None:
        return []
    done: list[str] = []
    procs = [daemons.DaemonProc.from_dict(p) for p in reversed(st.procs)]
    stopped = sum(daemons.stop(p) for p in procs)
    done.append(f"stopped {stopped} of {len(procs)} processes")
    if netns.exists(st.ns):
        left = netns.pids(st.ns)
        if left:  # never kill what we did not start: say so, and keep the state for later
            raise LabError(f"processes {left} still run in {st.ns}; the fleet state is kept")
        netns.run(["ip", "netns", "delete", st.ns])
        done.append(f"deleted namespace {st.ns}")
    if netns.exists(st.oob_ns):  # the veth goes with the namespace; make sure
        gone = netns.run(["ip", "link", "show", OOB_PORT], netns=st.oob_ns, check=False)
        if gone.returncode == 0:
            netns.run(["ip", "link", "del", OOB_PORT], netns=st.oob_ns, check=False)
    files = Path(st.dir)
    if files.is_dir() and files.parent == FLEET_ROOT:
        shutil.rmtree(files)
        done.append(f"removed {files}")
    STATE_FILE.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        FLEET_ROOT.rmdir()
    return done


@contextlib.contextmanager
def on_twin(n_sites: int, per_site: int) -> Iterator[Inventory]:
    """The fleet's inventory, on the twin, for the block's duration (root): the twin lock held,
    the example group's twin brought up if none is (and taken down after), the fleet always
    taken down."""
    from agent.lab import build  # noqa: PLC0415 - not in the measured children (fleet_states)

    with build.exclusive(print):
        twin = LabState.load(build.DEFAULT_LAB)
        brought = twin is None
        if twin is None:
            print("bringing the twin up (it will be taken down after)")
            twin = build.up(load(EXAMPLE))
        try:
            inv = load(twin.inventory)
            t = time.perf_counter()
            fleet_inv = up(inv, blueprint(inv, twin.lab), twin, n_sites, per_site)
            print(
                f"fleet up: {len(fleet_inv.devices())} devices in {time.perf_counter() - t:.1f} s"
            )
            try:
                yield fleet_inv
            finally:
                print("fleet down: " + "; ".join(down()))
        finally:
            if brought:
                build.down()
                print("twin down")


def main() -> None:
    parser = argparse.ArgumentParser(description="the benchmark fleet (root)")
    parser.add_argument("--down", action="store_true", help="remove a fleet left by a crash")
    args = parser.parse_args()
    if args.down:
        print("; ".join(down()) or "no fleet was up")


if __name__ == "__main__":
    main()
