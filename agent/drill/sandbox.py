"""The sandbox copy of a group's inventory for an exercise: every network and address moved into
the twin's ranges, every secret reference pointed at twin-generated files in the drill's work
directory, inline host-key and certificate pins dropped (the twin generates and pins its own).

Deterministic: the data networks (zone subnets, interface networks such as the /30 of a link)
are sorted largest first, then by address, and laid out one after the other from 198.18.0.0,
each keeping its prefix length, so every address keeps its offset in its network (a host stays
in its zone, a gateway stays its zone's gateway, both ends of a /30 stay on it). The management
network moves to 198.19.0.0 with the same prefix length. An address outside every network the
inventory declares cannot be mapped: refused, as is anything the copy would leave outside
198.18.0.0/15 (`check`). Pure: reads models, returns a document; never reads a secret.

Imports the inventory models and the twin's address range constant only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.errors import DrillError, SafetyError
from agent.inventory.models import Inventory

__all__ = ["DATA", "MGMT", "SANDBOX", "Renumbering", "addresses", "check", "renumber"]

SANDBOX = ipaddress.IPv4Network("198.18.0.0/15")  # the twin's range (agent.lab.topology)
DATA = ipaddress.IPv4Network("198.18.0.0/16")
MGMT = ipaddress.IPv4Network("198.19.0.0/16")
SECRETS_DIR = "secrets"  # relative to the sandbox inventory file

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


@dataclass
class Renumbering:
    """The old -> new network table and the sandbox document (a mapping `inventory.load` reads)."""

    networks: dict[Net, Net] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # original reference -> sandbox one

    def address(self, addr: Addr, what: str) -> Addr:
        for old, new in self.networks.items():
            if addr in old:
                return new.network_address + (int(addr) - int(old.network_address))
        raise SafetyError(
            f"{what}: address {addr} is in no network the inventory declares (no zone subnet, "
            "interface network or management network holds it), so the drill cannot move it "
            "into the twin's range",
            hint="declare the network it belongs to, or correct the address",
        )

    def network(self, net: Net, what: str) -> Net:
        first = self.address(net.network_address, what)
        return ipaddress.IPv4Network(f"{first}/{net.prefixlen}")

    def interface(self, text: str, what: str) -> str:
        iface = ipaddress.IPv4Interface(text)
        return f"{self.address(iface.ip, what)}/{iface.network.prefixlen}"


def _data_networks(inv: Inventory) -> list[Net]:
    mgmt = inv.group.management.subnet
    nets: set[Net] = set()
    for site in inv.sites:
        nets.update(z.subnet for z in site.zones)
        for device in site.devices:
            for iface in device.interfaces:
                if iface.address is not None and not iface.address.network.subnet_of(mgmt):
                    nets.add(iface.address.network)
    return sorted(nets, key=lambda n: (n.prefixlen, int(n.network_address)))


def _layout(nets: list[Net], into: Net, what: str) -> dict[Net, Net]:
    """Top-level networks (not inside another) laid out largest first from `into`'s start."""
    top: list[Net] = []
    for net in nets:  # sorted largest first: a containing network comes before its parts
        if not any(net.subnet_of(t) for t in top):
            top.append(net)
    out: dict[Net, Net] = {}
    cursor = int(into.network_address)
    for net in top:
        if net.prefixlen < into.prefixlen:
            raise DrillError(
                f"the {what} network {net} is larger than the twin's whole {what} range {into}: "
                "the drill cannot lay it out (an external site declared as a whole address "
                "space?)",
                hint="declare the external site's zone with the addresses the group really "
                "uses (a /24 or smaller is enough for the twin)",
            )
        if cursor + net.num_addresses > int(into.broadcast_address) + 1:
            raise DrillError(
                f"the group's {what} networks do not fit in the twin's {into} "
                f"({net} and the ones after it): the group is too large for one twin on this "
                "machine",
                hint="drill a part of the group: an inventory with the hit site, the core and "
                "the sites the scenario names",
            )
        out[net] = ipaddress.IPv4Network(f"{ipaddress.IPv4Address(cursor)}/{net.prefixlen}")
        cursor += net.num_addresses  # sorted largest first: the next block stays aligned
    return out


def renumber(inv: Inventory) -> Renumbering:
    """The sandbox copy of `inv` as a document (see the module's docstring). Raises SafetyError
    for an address it cannot map and DrillError for a group too large for one twin."""
    r = Renumbering()
    mgmt = inv.group.management.subnet
    r.networks.update(_layout([mgmt], MGMT, "management"))
    r.networks.update(_layout(_data_networks(inv), DATA, "data"))
    doc = inv.model_dump(mode="json", by_alias=True, exclude_none=True)
    group = doc["group"]
    group["management"] = {
        "subnet": str(r.network(mgmt, "group.management.subnet")),
        "agent_address": str(
            r.address(inv.group.management.agent_address, "group.management.agent_address")
        ),
    }
    group["known_hosts"] = f"{SECRETS_DIR}/known_hosts"
    group["tls_pins"] = f"{SECRETS_DIR}/tls_pins"
    if "probe_identity" in group:
        group["probe_identity"]["certificate"] = f"{SECRETS_DIR}/probe-daemon.pem"
    for s_doc, site in zip(doc["sites"], inv.sites, strict=True):
        _site(r, s_doc, site.name)
    _secrets(r, doc)
    r.document = doc
    return r


def _site(r: Renumbering, doc: dict[str, Any], name: str) -> None:
    for d in doc.get("devices", []):
        where = f"{name}/{d['name']}"
        d["management"]["address"] = str(
            r.address(Addr(d["management"]["address"]), f"{where} management")
        )
        for i in d.get("interfaces", []):
            if "address" in i:
                i["address"] = r.interface(i["address"], f"{where}:{i['name']}")
        d.get("ssh", {}).pop("host_key", None)  # the twin generates host keys (known_hosts)
        d.get("https", {}).pop("certificate", None)  # and certificates (tls_pins)
    for z in doc.get("zones", []):
        where = f"{name}/{z['name']}"
        z["subnet"] = str(r.network(Net(z["subnet"]), f"{where} subnet"))
        for h in z.get("hosts", []):
            h["address"] = str(r.address(Addr(h["address"]), f"{where}/{h['name']}"))
    for link in doc.get("links", []):
        if "peer_address" in link:
            link["peer_address"] = str(
                r.address(Addr(link["peer_address"]), f"{name} link {link['name']} peer")
            )
    for p in doc.get("probes", []):
        for leg in p.get("legs", []):
            leg["address"] = str(r.address(Addr(leg["address"]), f"{name} probe {p['id']} leg"))
        ctl = p["control"]
        ctl["address"] = str(r.address(Addr(ctl["address"]), f"{name} probe {p['id']} control"))
        ctl.pop("certificate", None)


_SECRET_KEYS = {
    "ssh": ("key", "password"),
    "snmp": ("auth", "priv", "community"),
    "https": ("password", "token"),
}


def _secrets(r: Renumbering, doc: dict[str, Any]) -> None:
    """Every secret reference -> a twin-generated file in the drill's directory (the same
    original reference keeps one sandbox file, so shared credentials stay shared)."""

    def point(holder: dict[str, Any], key: str, kind: str) -> None:
        ref = holder.get(key)
        if ref is None:
            return
        if ref not in r.secrets:
            r.secrets[ref] = f"file:{SECRETS_DIR}/{kind}-{key}-{len(r.secrets) + 1}"
        holder[key] = r.secrets[ref]

    holders: list[dict[str, Any]] = [doc["group"].get("defaults", {})]
    holders += [d for s in doc["sites"] for d in s.get("devices", [])]
    for holder in holders:
        for kind, keys in _SECRET_KEYS.items():
            settings = holder.get(kind)
            if isinstance(settings, dict):
                for key in keys:
                    point(settings, key, kind)
    ident = doc["group"].get("probe_identity")
    if ident is not None:
        point(ident, "key", "probe")


def addresses(inv: Inventory) -> Iterator[tuple[str, Net | Addr]]:
    """Every address-bearing field of `inv`, named: what the sandbox must keep in 198.18/15."""
    g = inv.group.management
    yield "group.management.subnet", g.subnet
    yield "group.management.agent_address", g.agent_address
    for site in inv.sites:
        for d in site.devices:
            yield f"{site.name}/{d.name} management", d.management.address
            for i in d.interfaces:
                if i.address is not None:
                    yield f"{site.name}/{d.name}:{i.name}", i.address.network
        for z in site.zones:
            yield f"{site.name}/{z.name} subnet", z.subnet
            for h in z.hosts:
                yield f"{site.name}/{z.name}/{h.name}", h.address
        for link in site.links:
            if link.peer_address is not None:
                yield f"{site.name} link {link.name} peer", link.peer_address
        for p in site.probes:
            yield f"{site.name} probe {p.id} control", p.control.address
            for leg in p.legs:
                yield f"{site.name} probe {p.id} leg {leg.zone}", leg.address


def check(inv: Inventory) -> None:
    """Refuse (SafetyError) a sandbox inventory with any address outside 198.18.0.0/15, or a
    secret reference that is not a file beside it (the drill never reads production secrets)."""
    bad = [
        f"{what} {value}"
        for what, value in addresses(inv)
        if not (value.subnet_of(SANDBOX) if isinstance(value, Net) else value in SANDBOX)
    ]
    if bad:
        raise SafetyError(
            f"{inv.path}: the drill's sandbox inventory has addresses outside {SANDBOX}: "
            + ", ".join(bad[:5])
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            + "; refusing to build a twin that could reach them",
            hint="this is a bug in the renumbering, or a hand-made sandbox: use `cordon drill "
            "run` on the group's own inventory, which renumbers it",
        )
    foreign = sorted({ref for ref in _refs(inv) if not ref.startswith(f"file:{SECRETS_DIR}/")})
    if foreign:
        raise SafetyError(
            f"{inv.path}: the drill's sandbox inventory references secrets that are not the "
            f"twin's own ({len(foreign)} reference(s), e.g. {foreign[0].partition(':')[0]}:...); "
            "the drill never loads production secrets",
            hint="use `cordon drill run` on the group's own inventory, which repoints them",
        )


def _refs(inv: Inventory) -> Iterator[str]:
    for _site, d in inv.devices():
        for settings, keys in ((d.ssh, ("key", "password")), (d.snmp, _SECRET_KEYS["snmp"])):
            for key in keys:
                if settings is not None and (ref := getattr(settings, key)) is not None:
                    yield ref
        if d.https is not None:
            yield from (r for r in (d.https.password, d.https.token) if r is not None)
    if inv.group.probe_identity is not None:
        yield inv.group.probe_identity.key
