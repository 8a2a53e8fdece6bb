"""Builds inventory documents (plain dicts, as if read from YAML) for a hospital group: the shipped
Hospi Grand Ouest example and synthetic groups of any size for benchmarks and drills.

Scaffolding, not runtime: lives outside `agent/` and imports only the standard library; used by
`scripts/make_example_inventory.py`, the tests and the benchmarks (never by `agent/`).

Pure: no I/O. Every address is inside 198.18.0.0/15 (data 198.18/16, management 198.19/16), so
anything built from these documents stays inside the digital twin's sandbox.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

Doc = dict[str, Any]

# The role of the catalogue's zones that have one (playbooks select zones by role, not by name).
ZONE_ROLES = {
    "servers": "servers",
    "admin": "office",
    "guest": "guest",
    "building": "building",
    "telephony": "telephony",
    "biomedical": "medical_devices",
    "imaging": "imaging",
    "lab": "lab",
    "pharmacy": "pharmacy",
    "management": "management",
    "backup": "backup",
    "identity": "identity",
}

# The zone catalogue of an establishment: name, criticality, VLAN, description, hosts.
# A host is (name, [(service, port), ...], description).
ZONES: list[tuple[str, str, int, str, list[tuple[str, list[tuple[str, int]], str]]]] = [
    (
        "icu",
        "life_critical",
        110,
        "ICU patient monitoring",
        [
            ("monitor-1", [], "bedside monitor, ICU room 1"),
            ("central-station", [("hl7", 2575)], "ICU central monitoring station"),
        ],
    ),
    (
        "neonatology",
        "life_critical",
        115,
        "Neonatal unit monitoring",
        [
            ("incubator-mon-1", [], "incubator monitor"),
            ("neonat-station", [("hl7", 2575)], "neonatal central station"),
        ],
    ),
    (
        "biomedical",
        "life_critical",
        120,
        "Biomedical devices: pumps, ventilators",
        [
            ("pump-gw", [("maint", 8022)], "infusion pump gateway (vendor maintenance endpoint)"),
        ],
    ),
    (
        "imaging",
        "clinical",
        130,
        "Imaging modalities and local PACS",
        [
            ("modality-ct", [], "CT scanner"),
            ("pacs", [("dicom", 104)], "local PACS"),
        ],
    ),
    (
        "lab",
        "clinical",
        140,
        "Lab analysers",
        [
            ("analyser-1", [], "haematology analyser"),
        ],
    ),
    (
        "sterilisation",
        "clinical",
        150,
        "Sterilisation traceability",
        [
            ("autoclave-1", [], "autoclave controller"),
        ],
    ),
    (
        "pharmacy",
        "clinical",
        160,
        "Pharmacy automation",
        [
            ("dispensing-robot", [("api", 8443)], "dispensing robot"),
        ],
    ),
    (
        "telephony",
        "life_critical",
        170,
        "Telephony / VoIP, emergency lines",
        [
            ("ipbx", [("sip", 5060)], "IP PBX"),
            ("phone-urgences", [], "emergency department phone"),
        ],
    ),
    (
        "servers",
        "clinical",
        180,
        "Local servers: EHR, lab system, traceability, files",
        [
            ("ehr", [("https", 443)], "electronic health record front end"),
            ("lis", [("astm", 5001)], "local lab information system"),
            ("steri-trace", [("trace", 8080)], "sterilisation traceability server"),
            ("file-server", [("smb", 445)], "file server"),
        ],
    ),
    (
        "admin",
        "business",
        190,
        "Administration and office workstations",
        [
            ("pc-admin-1", [], "office workstation"),
        ],
    ),
    (
        "guest",
        "guest",
        200,
        "Guest Wi-Fi",
        [
            ("guest-1", [], "visitor laptop"),
        ],
    ),
    (
        "building",
        "business",
        210,
        "Building management",
        [
            ("bms-controller", [("modbus", 502)], "building management controller"),
        ],
    ),
    (
        "management",
        "management",
        990,
        "Local IT administration (jump host)",
        [
            ("jump-host", [("ssh", 22)], "local IT jump host"),
        ],
    ),
]

PROFILES: dict[str, tuple[str, ...]] = {
    "maternity": tuple(z[0] for z in ZONES),
    "clinic": tuple(z[0] for z in ZONES if z[0] != "neonatology"),
    "rehab": (
        "biomedical",
        "lab",
        "pharmacy",
        "telephony",
        "servers",
        "admin",
        "guest",
        "building",
        "management",
    ),
}

# Local flows of an establishment: (name, from zone/host, to zone/host:service, must_survive).
LOCAL_FLOWS = [
    ("icu-monitoring", "icu/monitor-1", "icu/central-station:hl7", True),
    ("neonat-monitoring", "neonatology/incubator-mon-1", "neonatology/neonat-station:hl7", True),
    ("lab-lis", "lab/analyser-1", "servers/lis:astm", True),
    ("imaging-pacs", "imaging/modality-ct", "imaging/pacs:dicom", True),
    ("emergency-phone", "telephony/phone-urgences", "telephony/ipbx:sip", True),
    ("sterilisation-trace", "sterilisation/autoclave-1", "servers/steri-trace:trace", True),
    ("pharmacy-ehr", "pharmacy/dispensing-robot", "servers/ehr:https", False),
    ("admin-ehr", "admin/pc-admin-1", "servers/ehr:https", False),
    ("admin-files", "admin/pc-admin-1", "servers/file-server:smb", False),
    ("it-bms", "management/jump-host", "building/bms-controller:modbus", False),
]


@dataclass(frozen=True)
class SiteSpec:
    code: str
    name: str
    display_name: str
    city: str
    tags: tuple[str, ...]
    profile: str = "clinic"
    access_switches: int = 0
    firewall: str = "linux_nftables"  # the platform of its edge firewall
    switch: str = "cisco_ios"  # the platform of its switches


@dataclass
class _Alloc:
    """Hands out subnets and addresses in order, so every document is deterministic."""

    zone_prefix: int
    data: ipaddress.IPv4Network = field(
        default_factory=lambda: ipaddress.IPv4Network("198.18.0.0/16")
    )
    next_zone: int = 0
    links: dict[str, int] = field(default_factory=dict)

    def zone_subnet(self) -> ipaddress.IPv4Network:
        subnets = self.data.subnets(new_prefix=self.zone_prefix)
        for _ in range(self.next_zone):
            next(subnets)
        self.next_zone += 1
        return next(subnets)

    def link(self, kind: int) -> tuple[str, str]:
        """A /30 in 198.18.(224+kind).0/24 (wrapping into following /24s)."""
        n = self.links.get(str(kind), 0)
        self.links[str(kind)] = n + 1
        base = int(ipaddress.IPv4Address("198.18.224.0")) + kind * 8 * 256 + n * 4
        return str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2))


LINK_KINDS = {"internet": 0, "wan": 1, "remote_access": 2, "vendor_maintenance": 3}
LINK_IFACE = {
    "internet": "inet0",
    "wan": "wan0",
    "remote_access": "vpn0",
    "vendor_maintenance": "vnd0",
}
EXTERNAL_PEER = {
    "internet": "internet",
    "remote_access": "remote-access",
    "vendor_maintenance": "vendors",
}

HGO_SITES = [
    SiteSpec(
        "rns",
        "rennes-la-sagesse",
        "Clinique mutualiste La Sagesse",
        "Rennes",
        ("bretagne",),
        "maternity",
        access_switches=1,
    ),
    SiteSpec(
        "stn",
        "saint-nazaire-estuaire",
        "Clinique mutualiste de l'Estuaire",
        "Saint-Nazaire",
        ("pays-de-la-loire", "loire-atlantique"),
        "maternity",
    ),
    SiteSpec(
        "nts",
        "nantes-jules-verne",
        "Clinique Jules Verne",
        "Nantes",
        ("pays-de-la-loire", "loire-atlantique"),
    ),
    SiteSpec(
        "sgv",
        "saint-gilles-villa-notre-dame",
        "Villa Notre Dame (SSR)",
        "Saint-Gilles-Croix-de-Vie",
        ("pays-de-la-loire", "vendee"),
        "rehab",
    ),
    SiteSpec(
        "fnt",
        "fontenay-sud-vendee",
        "Clinique Sud Vendee",
        "Fontenay-le-Comte",
        ("pays-de-la-loire", "vendee"),
    ),
    SiteSpec(
        "bz1",
        "bretagne-etab-1",
        "Etablissement breton 1 (placeholder name)",
        "Bretagne (placeholder)",
        ("bretagne", "placeholder"),
    ),
    SiteSpec(
        "bz2",
        "bretagne-etab-2",
        "Etablissement breton 2 (placeholder name)",
        "Bretagne (placeholder)",
        ("bretagne", "placeholder"),
        "maternity",
    ),
    SiteSpec(
        "bz3",
        "bretagne-etab-3",
        "Etablissement breton 3 (placeholder name)",
        "Bretagne (placeholder)",
        ("bretagne", "placeholder"),
        "rehab",
    ),
    SiteSpec(
        "bz4",
        "bretagne-etab-4",
        "Etablissement breton 4 (placeholder name)",
        "Bretagne (placeholder)",
        ("bretagne", "placeholder"),
    ),
]


# The platforms of the example group, as French hospital groups run them: La Sagesse and two
# sister sites behind FortiGates, three behind Stormshield SNS, the rest behind Linux firewalls;
# the clean core behind a FortiGate. Sites not named keep the SiteSpec defaults.
HGO_FIREWALLS = {
    "rns": "fortigate",
    "stn": "fortigate",
    "nts": "fortigate",
    "sgv": "stormshield",
    "fnt": "stormshield",
    "bz1": "stormshield",
}
HGO_CORE_FIREWALL = "fortigate"

# The platforms of the example group's switches (all the switches of a site run one platform):
# each switch platform sits behind each firewall platform once at least where the mix allows (a
# FortiGate, a Stormshield, a Linux firewall), so every pairing the group runs is exercised by the
# same playbooks. La Sagesse (the demo's site hit, with an access switch behind its core switch),
# Saint-Gilles and Bretagne 2 on Catalyst IOS-XE; Saint-Nazaire, Fontenay and Bretagne 3 on
# Aruba AOS-CX; Bretagne 1 (behind a Stormshield) and Bretagne 4 (behind a Linux firewall) on
# Juniper EX (`juniper_junos`, an L3 switch that bridges here: the firewall routes the zones);
# Nantes and the clean core keep the IOS-style switches (`cisco_ios`: no native dead-man, so the
# controller-side safety net stays covered on a switch).
HGO_SWITCHES = {
    "rns": "cisco_iosxe",
    "sgv": "cisco_iosxe",
    "bz2": "cisco_iosxe",
    "stn": "aruba_aoscx",
    "fnt": "aruba_aoscx",
    "bz3": "aruba_aoscx",
    "bz1": "juniper_junos",
    "bz4": "juniper_junos",
}


@dataclass(frozen=True)
class PortNames:
    """A switch platform's own interface names: its management port, its access ports (1..),
    its uplink (the trunk toward the edge firewall or the core switch) and the trunks a core
    switch has to its access switches (1..)."""

    mgmt: str
    access: str  # a format with {n}
    uplink: str
    downlink: str  # a format with {n}


SWITCH_PORTS = {
    # the IOS-style twin (FRR) uses Linux kernel names as they are
    "cisco_ios": PortNames("mgmt0", "gi{n}", "gi0", "gi{n40}"),
    # a Catalyst 9300: GigabitEthernet0/0 the management port, 1/1/x the uplink module
    "cisco_iosxe": PortNames(
        "GigabitEthernet0/0",
        "GigabitEthernet1/0/{n}",
        "TenGigabitEthernet1/1/1",
        "TenGigabitEthernet1/1/{n1}",
    ),
    # an AOS-CX 6300 (48 ports and 4 uplinks): mgmt, member/slot/port names
    "aruba_aoscx": PortNames("mgmt", "1/1/{n}", "1/1/49", "1/1/{n49}"),
    # a Juniper EX: me0 the management port, ge-0/0/x access, xe-0/1/x the uplink module
    "juniper_junos": PortNames("me0", "ge-0/0/{n}", "xe-0/1/0", "xe-0/1/{n}"),
}


def port_name(fmt: str, n: int) -> str:
    return fmt.format(n=n, n1=n + 1, n40=n + 40, n49=n + 49)


def hospi_grand_ouest(*, mixed: bool = True) -> Doc:
    """The Hospi Grand Ouest group: La Sagesse, 8 sister establishments, the clean core; on the
    mix of platforms above, or (`mixed=False`) all on Linux firewalls and IOS-style switches
    (the benchmarks compare the two)."""
    specs = [
        replace(
            spec,
            firewall=HGO_FIREWALLS.get(spec.code, spec.firewall),
            switch=HGO_SWITCHES.get(spec.code, spec.switch),
        )
        if mixed
        else spec
        for spec in HGO_SITES
    ]
    return group_document(
        "hospi-grand-ouest",
        "Hospi Grand Ouest",
        specs,
        core_firewall=HGO_CORE_FIREWALL if mixed else "linux_nftables",
        zone_prefix=24,
        inter_site_flows=[
            (
                "rns-telerad-nts",
                "rennes-la-sagesse/imaging/pacs",
                "nantes-jules-verne/imaging/pacs:dicom",
            ),
            (
                "stn-lab-rns",
                "saint-nazaire-estuaire/lab/analyser-1",
                "rennes-la-sagesse/servers/lis:astm",
            ),
        ],
    )


def synthetic(n_sites: int, devices_per_site: int = 10) -> Doc:
    """A group of `n_sites` clinics with `devices_per_site` devices each (fw + switches)."""
    specs = [
        SiteSpec(
            f"s{i:03d}",
            f"site-{i:03d}",
            f"Synthetic site {i}",
            "Nowhere",
            ("synthetic",),
            "clinic",
            access_switches=max(0, devices_per_site - 2),
        )
        for i in range(1, n_sites + 1)
    ]
    zone_prefix = 24 if n_sites <= 18 else 27
    return group_document(
        "synthetic",
        f"Synthetic group of {n_sites}",
        specs,
        zone_prefix=zone_prefix,
        inter_site_flows=[],
    )


def group_document(
    name: str,
    display: str,
    specs: list[SiteSpec],
    *,
    zone_prefix: int,
    inter_site_flows: list[tuple[str, str, str]],
    core_firewall: str = "linux_nftables",
) -> Doc:
    alloc = _Alloc(zone_prefix=zone_prefix)
    mgmt = _MgmtAlloc()
    sites: list[Doc] = []
    flows: list[Doc] = []
    core, core_fw = _core_site(alloc, mgmt, core_firewall)
    externals = _external_sites(alloc)
    for spec in specs:
        site, site_flows = _establishment(spec, alloc, mgmt, core_fw)
        sites.append(site)
        flows.extend(site_flows)
    for fname, src, dst in inter_site_flows:
        flows.append(
            {
                "name": fname,
                "from": src,
                "to": dst,
                "must_survive": False,
                "description": "inter-site flow through the group WAN",
            }
        )
    flows.append(
        {
            "name": "core-updates",
            "from": "hgo-core/servers/dpi-central",
            "to": "internet/public/web:https",
            "must_survive": False,
            "description": "core servers fetch updates",
        }
    )
    devices = [d for site in (core, *sites) for d in site["devices"]]
    pins = {"tls_pins": ".secrets/tls_pins"} if any("https" in d for d in devices) else {}
    return {
        "group": {
            "name": name,
            "display_name": display,
            "timezone": "Europe/Paris",
            "core": "hgo-core",
            "management": {"subnet": "198.19.0.0/16", "agent_address": "198.19.255.1"},
            "known_hosts": ".secrets/known_hosts",
            **pins,
            "defaults": {
                "ssh": {"username": "root", "key": "file:.secrets/ssh/cordon_ed25519"},
                "snmp": {
                    "version": "v3",
                    "user": "cordon",
                    "auth_protocol": "sha",
                    "auth": "file:.secrets/snmp/auth",
                    "priv_protocol": "aes",
                    "priv": "file:.secrets/snmp/priv",
                },
            },
        },
        "sites": [core, *sites, *externals],
        "flows": flows,
    }


@dataclass
class _MgmtAlloc:
    site: int = 0

    def next_site(self) -> int:
        self.site += 1
        return self.site

    @staticmethod
    def address(site: int, device: int) -> str:
        """Site N's device D: 198.19.0.0 + 16*N + 10 + D (16 devices per site at most)."""
        return str(
            ipaddress.IPv4Address(
                int(ipaddress.IPv4Address("198.19.0.0")) + site * 16 + device + 10
            )
        )


def _https(platform: str, device: str) -> Doc | None:
    """The HTTPS API settings of a device of `platform` (its secrets by reference, one file per
    device; the certificate pinned through the group's tls_pins); None for an SSH platform."""
    if platform == "fortigate":
        return {"token": f"file:.secrets/https/{device}.token"}
    if platform in ("stormshield", "aruba_aoscx"):
        return {"username": "admin", "password": f"file:.secrets/https/{device}.password"}
    return None


def _device(
    name: str,
    role: str,
    platform: str,
    mgmt_addr: str,
    interfaces: list[Doc],
    mgmt_if: str = "mgmt0",
) -> Doc:
    doc: Doc = {
        "name": name,
        "role": role,
        "platform": platform,
        "management": {"address": mgmt_addr, "interface": mgmt_if},
        "interfaces": [{"name": mgmt_if, "description": "out-of-band management"}, *interfaces],
    }
    https = _https(platform, name)
    if https is not None:
        doc["https"] = https
    return doc


def _firewall(
    name: str, mgmt_addr: str, interfaces: list[Doc], platform: str = "linux_nftables"
) -> Doc:
    return _device(name, "edge_firewall", platform, mgmt_addr, interfaces)


def _switch(
    name: str, role: str, mgmt_addr: str, ports: list[Doc], platform: str = "cisco_ios"
) -> Doc:
    return _device(name, role, platform, mgmt_addr, ports, SWITCH_PORTS[platform].mgmt)


def _zones_and_switches(
    code: str,
    zone_names: tuple[str, ...],
    alloc: _Alloc,
    n_access: int,
    switch: str = "cisco_ios",
) -> tuple[list[Doc], list[Doc], list[list[Doc]], list[Doc]]:
    """Zones, firewall gateway sub-interfaces, and switch ports of a site (its switches on
    platform `switch`, named as that platform names its ports)."""
    names = SWITCH_PORTS[switch]
    zones: list[Doc] = []
    gateways: list[Doc] = []
    switches_ports: list[list[Doc]] = [[] for _ in range(1 + n_access)]
    port_counter = [0] * (1 + n_access)
    catalogue = {z[0]: z for z in ZONES}
    for zi, zname in enumerate(zone_names):
        _, crit, vlan, desc, hosts = catalogue[zname]
        subnet = alloc.zone_subnet()
        gw_if = f"lan0.{vlan}"
        gw = ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        gateways.append(
            {
                "name": gw_if,
                "description": f"gateway of zone {zname}",
                "address": str(gw),
                "vlan": vlan,
            }
        )
        zone_ports: list[str] = []
        zone_hosts: list[Doc] = []
        for hi, (hname, services, hdesc) in enumerate(hosts):
            sw = (zi + hi) % (1 + n_access)
            port_counter[sw] += 1
            pname = port_name(names.access, port_counter[sw])
            swname = f"{code}-sw{sw + 1}"
            switches_ports[sw].append(
                {"name": pname, "description": f"{zname} {hname}", "vlan": vlan}
            )
            zone_ports.append(f"{swname}:{pname}")
            zone_hosts.append(
                {
                    "name": hname,
                    "address": str(subnet.network_address + 10 + hi),
                    "port": f"{swname}:{pname}",
                    "description": hdesc,
                    "services": [{"name": s, "port": p} for s, p in services],
                }
            )
        zones.append(
            {
                "name": zname,
                "criticality": crit,
                **({"role": ZONE_ROLES[zname]} if zname in ZONE_ROLES else {}),
                "description": desc,
                "vlan": vlan,
                "subnet": str(subnet),
                "gateway": f"{code}-fw1:{gw_if}",
                "ports": zone_ports,
                "hosts": zone_hosts,
            }
        )
    up = names.uplink
    cabling: list[Doc] = [{"a": f"{code}-fw1:lan0", "b": f"{code}-sw1:{up}"}]
    trunks: list[Doc] = []
    for i in range(1, 1 + n_access):
        down = port_name(names.downlink, i)
        trunks.append({"name": down, "description": f"trunk to {code}-sw{i + 1}"})
        cabling.append({"a": f"{code}-sw1:{down}", "b": f"{code}-sw{i + 1}:{up}"})
    switch_ports = [
        [{"name": up, "description": "trunk to edge firewall"}, *switches_ports[0], *trunks],
        *(
            [{"name": up, "description": f"trunk to {code}-sw1"}, *ports]
            for ports in switches_ports[1:]
        ),
    ]
    fw_ifaces = [{"name": "lan0", "description": "trunk to core switch"}, *gateways]
    return zones, fw_ifaces, switch_ports, cabling


def _core_site(
    alloc: _Alloc, mgmt: _MgmtAlloc, firewall: str = "linux_nftables"
) -> tuple[Doc, Doc]:
    zone_names = ("servers", "backup", "identity")
    zones: list[Doc] = []
    gateways: list[Doc] = []
    ports: list[Doc] = [{"name": "gi0", "description": "trunk to core firewall"}]
    hosts_by_zone = {
        "servers": [("dpi-central", [("https", 443)], "group EHR (DPI) central server")],
        "backup": [("backup-srv", [("backup", 9102)], "backup server (offline copies)")],
        "identity": [("ad-dc", [("ldap", 389)], "directory (rebuilt first in recovery)")],
    }
    crit = {"servers": "clinical", "backup": "business", "identity": "business"}
    n = 0
    for zi, zname in enumerate(zone_names):
        vlan = 300 + zi * 10
        subnet = alloc.zone_subnet()
        gw = ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{subnet.prefixlen}")
        gateways.append(
            {
                "name": f"lan0.{vlan}",
                "description": f"gateway of zone {zname}",
                "address": str(gw),
                "vlan": vlan,
            }
        )
        zone_hosts = []
        zone_ports = []
        for hi, (hname, services, hdesc) in enumerate(hosts_by_zone[zname]):
            n += 1
            ports.append({"name": f"gi{n}", "description": f"{zname} {hname}", "vlan": vlan})
            zone_ports.append(f"core-sw1:gi{n}")
            zone_hosts.append(
                {
                    "name": hname,
                    "address": str(subnet.network_address + 10 + hi),
                    "port": f"core-sw1:gi{n}",
                    "description": hdesc,
                    "services": [{"name": s, "port": p} for s, p in services],
                }
            )
        zones.append(
            {
                "name": zname,
                "criticality": crit[zname],
                "role": ZONE_ROLES[zname],
                "vlan": vlan,
                "description": f"clean core {zname}",
                "subnet": str(subnet),
                "gateway": f"core-fw1:lan0.{vlan}",
                "ports": zone_ports,
                "hosts": zone_hosts,
            }
        )
    site_no = 0
    local, peer = alloc.link(LINK_KINDS["internet"])
    fw = _firewall(
        "core-fw1",
        _MgmtAlloc.address(site_no, 0),
        [
            {"name": "inet0", "description": "core internet uplink", "address": f"{local}/30"},
            {"name": "lan0", "description": "trunk to core switch"},
            *gateways,
        ],
        firewall,
    )
    sw = _switch("core-sw1", "core_switch", _MgmtAlloc.address(site_no, 1), ports)
    site = {
        "name": "hgo-core",
        "kind": "core",
        "display_name": "Hospi Grand Ouest clean core",
        "city": "Group datacenter",
        "tags": ["core"],
        "devices": [fw, sw],
        "zones": zones,
        "links": [
            {
                "name": "internet",
                "kind": "internet",
                "device": "core-fw1",
                "interface": "inet0",
                "peer": "internet",
                "peer_address": peer,
            }
        ],
        "cabling": [{"a": "core-fw1:lan0", "b": "core-sw1:gi0"}],
    }
    return site, fw


def _external_sites(alloc: _Alloc) -> list[Doc]:
    def ext(
        name: str, display: str, zone: str, hosts: list[tuple[str, list[tuple[str, int]]]]
    ) -> Doc:
        subnet = alloc.zone_subnet()
        return {
            "name": name,
            "kind": "external",
            "display_name": display,
            "zones": [
                {
                    "name": zone,
                    "criticality": "guest",
                    "subnet": str(subnet),
                    "hosts": [
                        {
                            "name": h,
                            "address": str(subnet.network_address + 10 + i),
                            "services": [{"name": s, "port": p} for s, p in svcs],
                        }
                        for i, (h, svcs) in enumerate(hosts)
                    ],
                }
            ],
        }

    return [
        ext("internet", "The internet", "public", [("web", [("https", 443)]), ("scanner", [])]),
        ext("remote-access", "Remote-access users (VPN)", "users", [("doctor-home", [])]),
        ext("vendors", "Vendor remote maintenance", "biomed-vendors", [("vendor-gw", [])]),
    ]


def _establishment(
    spec: SiteSpec, alloc: _Alloc, mgmt: _MgmtAlloc, core_fw: Doc
) -> tuple[Doc, list[Doc]]:
    site_no = mgmt.next_site()
    zone_names = PROFILES[spec.profile]
    zones, fw_lan, sw_ports, cabling = _zones_and_switches(
        spec.code, zone_names, alloc, spec.access_switches, spec.switch
    )
    links: list[Doc] = []
    link_ifaces: list[Doc] = []
    for kind in ("internet", "wan", "remote_access", "vendor_maintenance"):
        local, peer = alloc.link(LINK_KINDS[kind])
        iface = LINK_IFACE[kind]
        link_ifaces.append(
            {
                "name": iface,
                "description": f"{kind.replace('_', ' ')} link",
                "address": f"{local}/30",
            }
        )
        link: Doc = {
            "name": kind.replace("_", "-"),
            "kind": kind,
            "device": f"{spec.code}-fw1",
            "interface": iface,
            "peer_address": peer,
        }
        if kind == "wan":
            peer_if = f"wan-{spec.code}"
            core_fw["interfaces"].append(
                {"name": peer_if, "description": f"WAN to {spec.name}", "address": f"{peer}/30"}
            )
            link.update({"peer": "hgo-core", "peer_device": "core-fw1", "peer_interface": peer_if})
        else:
            link["peer"] = EXTERNAL_PEER[kind]
        links.append(link)
    fw = _firewall(
        f"{spec.code}-fw1", _MgmtAlloc.address(site_no, 0), [*link_ifaces, *fw_lan], spec.firewall
    )
    devices = [fw]
    for i, ports in enumerate(sw_ports):
        role = "core_switch" if i == 0 else "access_switch"
        devices.append(
            _switch(
                f"{spec.code}-sw{i + 1}",
                role,
                _MgmtAlloc.address(site_no, i + 1),
                ports,
                spec.switch,
            )
        )
    site = {
        "name": spec.name,
        "kind": "establishment",
        "display_name": spec.display_name,
        "city": spec.city,
        "tags": list(spec.tags),
        "devices": devices,
        "zones": zones,
        "links": links,
        "cabling": cabling,
    }
    present = set(zone_names)
    flows: list[Doc] = []
    for fname, src, dst, survive in LOCAL_FLOWS:
        if src.split("/")[0] in present and dst.split("/")[0] in present:
            flows.append(
                {
                    "name": f"{spec.code}-{fname}",
                    "from": f"{spec.name}/{src}",
                    "to": f"{spec.name}/{dst}",
                    "must_survive": survive,
                }
            )
    if "admin" in present:
        flows.append(
            {
                "name": f"{spec.code}-admin-internet",
                "from": f"{spec.name}/admin/pc-admin-1",
                "to": "internet/public/web:https",
            }
        )
    if "guest" in present:
        flows.append(
            {
                "name": f"{spec.code}-guest-internet",
                "from": f"{spec.name}/guest/guest-1",
                "to": "internet/public/web:https",
            }
        )
    flows.append(
        {
            "name": f"{spec.code}-vendor-maint",
            "from": "vendors/biomed-vendors/vendor-gw",
            "to": f"{spec.name}/biomedical/pump-gw:maint",
        }
    )
    flows.append(
        {
            "name": f"{spec.code}-remote-ehr",
            "from": "remote-access/users/doctor-home",
            "to": f"{spec.name}/servers/ehr:https",
        }
    )
    flows.append(
        {
            "name": f"{spec.code}-backup-core",
            "from": f"{spec.name}/servers/file-server",
            "to": "hgo-core/backup/backup-srv:backup",
        }
    )
    flows.append(
        {
            "name": f"{spec.code}-ehr-core",
            "from": f"{spec.name}/servers/ehr",
            "to": "hgo-core/servers/dpi-central:https",
        }
    )
    return site, flows


# The in-band variant: the agent sits in a zone of the clean core (it-admin, 198.19.0.0/24 on
# VLAN 330, port core-sw1:gi10) and manages every device through the sites' networks and the
# WAN: each firewall at its WAN address (the core's at its it-admin gateway), each switch at an
# address in its site's management zone (VLAN 990; the core switch's in it-admin).
INBAND_AGENT_ZONE = ("it-admin", 330, "198.19.0.0/24")
INBAND_AGENT_ADDRESS = "198.19.0.100"
INBAND_AGENT_PORT = "core-sw1:gi10"


def hospi_grand_ouest_inband() -> Doc:
    """Hospi Grand Ouest managed entirely in band, all on Linux firewalls and IOS-style switches
    (the vendor twins answer on an out-of-band interface of their own). No SNMP: its UDP cannot
    be kept through a cut by an exception (the rule model is TCP; see the README), so the agent
    reads the devices over SSH only."""
    doc = hospi_grand_ouest(mixed=False)
    for site in doc["sites"]:
        for device in site.get("devices", []):
            device["platform"] = (
                "linux_nftables" if device["role"] == "edge_firewall" else "cisco_ios"
            )
    zname, vlan, subnet = INBAND_AGENT_ZONE
    net = ipaddress.IPv4Network(subnet)
    group = doc["group"]
    group["name"] = "hospi-grand-ouest-inband"
    group["display_name"] = "Hospi Grand Ouest (in-band management)"
    group["management"] = {
        "mode": "in_band",
        "subnet": subnet,
        "agent_address": INBAND_AGENT_ADDRESS,
        "agent_site": "hgo-core",
        "agent_port": INBAND_AGENT_PORT,
    }
    group["defaults"].pop("snmp", None)
    group.pop("tls_pins", None)
    for site in doc["sites"]:
        if site.get("kind") == "external":
            continue
        if site["kind"] == "core":
            gateway = f"{net.network_address + 1}/{net.prefixlen}"
            fw, sw = site["devices"]
            fw["interfaces"].append(
                {
                    "name": f"lan0.{vlan}",
                    "description": f"gateway of zone {zname}",
                    "address": gateway,
                    "vlan": vlan,
                }
            )
            port = INBAND_AGENT_PORT.split(":")[1]
            sw["interfaces"].append({"name": port, "description": "the Cordon agent", "vlan": vlan})
            site["zones"].append(
                {
                    "name": zname,
                    "criticality": "management",
                    "role": "management",
                    "vlan": vlan,
                    "description": "IT administration: the Cordon agent",
                    "subnet": subnet,
                    "gateway": f"core-fw1:lan0.{vlan}",
                    "ports": [INBAND_AGENT_PORT],
                    "hosts": [],
                }
            )
            _inband(fw, f"lan0.{vlan}", str(net.network_address + 1))
            _inband_switch(sw, vlan, net, 0)
            continue
        mgmt_zone = next(z for z in site["zones"] if z["name"] == "management")
        zone_net = ipaddress.IPv4Network(mgmt_zone["subnet"])
        switches = [d for d in site["devices"] if d["role"] != "edge_firewall"]
        fw = next(d for d in site["devices"] if d["role"] == "edge_firewall")
        wan = next(i for i in fw["interfaces"] if i["name"] == LINK_IFACE["wan"])
        _inband(fw, wan["name"], wan["address"].split("/")[0])
        for i, sw in enumerate(switches):
            _inband_switch(sw, mgmt_zone["vlan"], zone_net, i)
    return doc


def _inband(device: Doc, interface: str, address: str) -> None:
    device["management"] = {"address": address, "interface": interface}
    device["interfaces"] = [i for i in device["interfaces"] if i["name"] != "mgmt0"]


def _inband_switch(device: Doc, vlan: int, net: ipaddress.IPv4Network, index: int) -> None:
    """A switch managed at .(2 + index) of its management zone, on its VLAN interface."""
    address = str(net.network_address + 2 + index)
    device["interfaces"].append(
        {
            "name": f"vl{vlan}",
            "description": "in-band management",
            "address": f"{address}/{net.prefixlen}",
            "vlan": vlan,
        }
    )
    _inband(device, f"vl{vlan}", address)
