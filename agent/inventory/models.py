"""The inventory's frozen models: a hospital group, its sites, devices, zones, links and flows.

Pure data and per-field validation (types, formats, CLI-injection guards). Cross-references are
checked in `agent.inventory.checks` (a device's platform among them: here it is only a well-formed
name). Imports pydantic, the standard library and `agent.inventory.platforms` (the name rule).
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr

from agent.inventory.platforms import valid_name

# --- scalar types with injection guards -------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Interface names as IOS, NX-OS, Junos and Linux spell them (Gi1/0/1, ge-0/0/1.100, eth0, lan0.110),
# and AOS-CX's member/slot/port names, which start with a digit (1/1/1, 1/1/49:2, 1/1/49.110):
# digits only, in two or three '/'-separated groups, an optional ':<split>' and '.<subinterface>'.
_IFNAME_RE = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9]*(?:[./:-][A-Za-z0-9]+)*"
    r"|[0-9]{1,3}(?:/[0-9]{1,3}){1,2}(?::[0-9]{1,2})?(?:\.[0-9]{1,4})?)\Z"
)
_TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Characters that would let a description escape its CLI line or a shell/nft string.
_DESC_FORBIDDEN = set("\"'`$;|&<>\\{}#!")


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lower-case letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit"
        )
    return value


def _ifname(value: str) -> str:
    if len(value) > 48 or not _IFNAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a safe interface name: letters and digits separated by single "
            "'/', '.', ':' or '-', at most 48 characters (this guards the device CLI against "
            "injected commands)"
        )
    return value


def _description(value: str) -> str:
    if len(value) > 120:
        raise ValueError(f"description is {len(value)} characters long; at most 120")
    bad = sorted({c for c in value if c in _DESC_FORBIDDEN or not c.isprintable()})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        refused = "".join(sorted(_DESC_FORBIDDEN))
        raise ValueError(
            f"description contains {shown}: control characters and {refused} are refused "
            "because they could inject commands into a device CLI"
        )
    return value


def _label(value: str) -> str:
    if len(value) > 200:
        raise ValueError(f"text is {len(value)} characters long; at most 200")
    if any(not c.isprintable() for c in value):
        raise ValueError("text contains control characters (newline, tab, escape...)")
    return value


def _tag(value: str) -> str:
    if not _TAG_RE.match(value):
        raise ValueError(f"{value!r} is not a valid tag: lower-case letters, digits, '-', '_'")
    return value


def _secret_ref(value: str) -> str:
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in ("env", "file") or not rest:
        raise ValueError(
            "a secret is given by reference only: 'env:VARIABLE' or 'file:PATH' "
            "(a file readable by its owner only); the secret itself never goes in the inventory"
        )
    if scheme == "env" and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", rest):
        raise ValueError(f"'env:{rest}' does not name a valid environment variable")
    return value


Name = Annotated[str, AfterValidator(_name)]
IfName = Annotated[str, AfterValidator(_ifname)]
Description = Annotated[str, AfterValidator(_description)]  # may reach a device CLI
Label = Annotated[str, AfterValidator(_label)]  # for people only; never sent to a device
Tag = Annotated[str, AfterValidator(_tag)]
SecretRef = Annotated[str, AfterValidator(_secret_ref)]
Port = Annotated[int, Field(ge=1, le=65535)]
Vlan = Annotated[int, Field(ge=1, le=4094)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --- enumerations -----------------------------------------------------------------------------


class Criticality(StrEnum):
    """Clinical criticality of a zone, most critical first."""

    LIFE_CRITICAL = "life_critical"
    CLINICAL = "clinical"
    BUSINESS = "business"
    GUEST = "guest"
    MANAGEMENT = "management"


class ZoneRole(StrEnum):
    """What a zone is for, whatever its name: playbooks select zones by role so that one playbook
    serves every group (a group's `servers` may be called `dc-local`, its office `bureautique`)."""

    SERVERS = "servers"  # local servers: EHR front end, lab system, traceability, files
    OFFICE = "office"  # administration and office workstations
    GUEST = "guest"  # patients' and visitors' Wi-Fi
    BUILDING = "building"  # building management: BMS, HVAC, access control
    TELEPHONY = "telephony"
    MEDICAL_DEVICES = "medical_devices"  # monitors, pumps, ventilators
    IMAGING = "imaging"
    LAB = "lab"
    PHARMACY = "pharmacy"
    MANAGEMENT = "management"  # in-band IT administration: jump hosts
    BACKUP = "backup"
    IDENTITY = "identity"  # directory, authentication


class DeviceRole(StrEnum):
    EDGE_FIREWALL = "edge_firewall"
    EDGE_ROUTER = "edge_router"
    CORE_SWITCH = "core_switch"
    ACCESS_SWITCH = "access_switch"
    VPN_CONCENTRATOR = "vpn_concentrator"
    WAN_ROUTER = "wan_router"


# A device's platform: a well-formed name here; `agent.inventory.checks` accepts it only if a
# platform of that name is registered (`agent.inventory.platforms`, fed by the platform registry).
Platform = Annotated[str, AfterValidator(valid_name)]


class LinkKind(StrEnum):
    """The links a containment playbook cuts, in the order of the reflex cards (L1 then L2)."""

    INTERNET = "internet"
    REMOTE_ACCESS = "remote_access"
    VENDOR_MAINTENANCE = "vendor_maintenance"
    WAN = "wan"


class SiteKind(StrEnum):
    ESTABLISHMENT = "establishment"
    CORE = "core"  # the group's clean core ("base de confiance"): datacenter, backups
    EXTERNAL = "external"  # the internet, remote-access users, vendors: outside our control


# --- models -----------------------------------------------------------------------------------


class SshSettings(_Model):
    username: Name | None = None
    key: SecretRef | None = None
    password: SecretRef | None = None
    port: Port = 22
    host_key: str | None = Field(
        default=None,
        description="Pinned public host key ('ssh-ed25519 AAAA...'); else the group known_hosts",
    )


class SnmpSettings(_Model):
    version: Literal["v3", "v2c"] = "v3"
    user: Name | None = None
    auth_protocol: Literal["sha", "sha256", "sha512"] = "sha"
    auth: SecretRef | None = None
    priv_protocol: Literal["aes", "aes192", "aes256"] = "aes"
    priv: SecretRef | None = None
    community: SecretRef | None = None  # v2c only, and only when the inventory says so
    port: Port = 161


_CERT_PIN_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def _cert_pin(value: str) -> str:
    if not _CERT_PIN_RE.match(value):
        raise ValueError(
            f"{value!r} is not a certificate pin: write 'sha256:' and the 64 lower-case hex "
            "digits of the SHA-256 of the server certificate (DER)"
        )
    return value


CertPin = Annotated[str, AfterValidator(_cert_pin)]


class HttpsSettings(_Model):
    """A device's HTTPS management API (FortiOS REST, Stormshield serverd, AOS-CX REST): its port,
    its credentials by reference only, and its certificate, pinned (never a CA's word alone)."""

    port: Port = 443
    username: Name | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None  # an API token (FortiOS REST API administrator)
    certificate: CertPin | None = Field(
        default=None,
        description="Pinned SHA-256 of the server certificate ('sha256:<hex>'); else the group "
        "tls_pins file",
    )


class Management(_Model):
    address: ipaddress.IPv4Address
    interface: IfName


class Interface(_Model):
    name: IfName
    description: Description = ""
    address: ipaddress.IPv4Interface | None = None
    vlan: Vlan | None = None


class Device(_Model):
    name: Name
    role: DeviceRole
    platform: Platform
    management: Management
    interfaces: tuple[Interface, ...] = ()
    ssh: SshSettings = SshSettings()
    snmp: SnmpSettings | None = None
    https: HttpsSettings | None = None
    tags: tuple[Tag, ...] = ()

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)


def _parse_port_ref(value: Any) -> Any:
    if isinstance(value, str):
        device, sep, interface = value.partition(":")
        if not sep:
            raise ValueError(f"{value!r} is not a port: write 'device:interface'")
        return {"device": device, "interface": interface}
    return value


def _parse_endpoint(value: Any) -> Any:
    if isinstance(value, str):
        path, _, service = value.partition(":")
        parts = path.split("/")
        if len(parts) != 3:
            raise ValueError(f"{value!r} is not an endpoint: write 'site/zone/host[:service]'")
        out: dict[str, Any] = dict(zip(("site", "zone", "host"), parts, strict=True))
        if service:
            out["service"] = service
        return out
    return value


class PortRef(_Model):
    device: Name
    interface: IfName

    def __str__(self) -> str:
        return f"{self.device}:{self.interface}"


PortSpec = Annotated[PortRef, BeforeValidator(_parse_port_ref)]


class Service(_Model):
    name: Name
    port: Port
    protocol: Literal["tcp"] = "tcp"


class Host(_Model):
    name: Name
    address: ipaddress.IPv4Address
    port: PortSpec | None = None  # the switch port the host is cabled to
    services: tuple[Service, ...] = ()
    description: Label = ""
    tags: tuple[Tag, ...] = ()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)


class Zone(_Model):
    name: Name
    criticality: Criticality
    role: ZoneRole | None = None  # what the zone is for; playbooks select zones by it
    description: Label = ""
    vlan: Vlan | None = None
    subnet: ipaddress.IPv4Network
    gateway: PortSpec | None = None  # the routed interface (SVI or sub-interface) of the zone
    ports: tuple[PortSpec, ...] = ()  # access ports carrying the zone
    hosts: tuple[Host, ...] = ()
    tags: tuple[Tag, ...] = ()

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)


class Link(_Model):
    name: Name
    kind: LinkKind
    device: Name
    interface: IfName
    peer: Name  # the site at the other end (the core, or an external site)
    peer_device: Name | None = None
    peer_interface: IfName | None = None
    peer_address: ipaddress.IPv4Address | None = None
    description: Description = ""


class Cable(_Model):
    """Internal cabling inside a site (firewall trunk to core switch, switch to switch)."""

    a: PortSpec
    b: PortSpec
    vlans: tuple[Vlan, ...] | Literal["all"] = "all"


class ProbeLeg(_Model):
    """A probe point's address in one zone of its site (a leg on that zone's VLAN)."""

    zone: Name
    address: ipaddress.IPv4Address


class ProbeControl(_Model):
    """How the daemon reaches a probe point: its control channel (mutual TLS) on the management
    network, and its certificate, pinned (inline, else the probe's id in the group tls_pins)."""

    address: ipaddress.IPv4Address
    port: Port = 8443
    certificate: CertPin | None = None


class ProbePoint(_Model):
    """A probe process on a host or VM of the site with a leg in each of its zones' VLANs: it
    opens the declared flows it tests (`flows`) from its own address in the flow's source zone,
    on the daemon's signed-in order (see `agent.probe`)."""

    id: Name
    legs: tuple[ProbeLeg, ...]
    control: ProbeControl
    flows: tuple[Name, ...] = ()  # the declared flows it tests (sources in its legs' zones)
    description: Label = ""

    def leg(self, zone: str) -> ProbeLeg | None:
        return next((leg for leg in self.legs if leg.zone == zone), None)


class ProbeIdentity(_Model):
    """The daemon's own identity toward the probe points: a certificate (a path relative to the
    inventory; public) and its private key (a secret reference)."""

    certificate: Label
    key: SecretRef


class Site(_Model):
    name: Name
    kind: SiteKind = SiteKind.ESTABLISHMENT
    display_name: Label = ""
    city: Label = ""
    tags: tuple[Tag, ...] = ()
    devices: tuple[Device, ...] = ()
    zones: tuple[Zone, ...] = ()
    links: tuple[Link, ...] = ()
    cabling: tuple[Cable, ...] = ()
    probes: tuple[ProbePoint, ...] = ()

    def device(self, name: str) -> Device | None:
        return next((d for d in self.devices if d.name == name), None)

    def zone(self, name: str) -> Zone | None:
        return next((z for z in self.zones if z.name == name), None)


class Endpoint(_Model):
    """A flow endpoint, written 'site/zone/host' (and ':service' on the destination)."""

    site: Name
    zone: Name
    host: Name
    service: Name | None = None

    def __str__(self) -> str:
        text = f"{self.site}/{self.zone}/{self.host}"
        return f"{text}:{self.service}" if self.service else text


EndpointSpec = Annotated[Endpoint, BeforeValidator(_parse_endpoint)]


class Flow(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Name
    source: EndpointSpec = Field(alias="from")
    destination: EndpointSpec = Field(alias="to")
    must_survive: bool = False
    description: Label = ""
    tags: tuple[Tag, ...] = ()


class ManagementMode(StrEnum):
    """How the agent reaches the devices it administers."""

    OUT_OF_BAND = "out_of_band"  # a network of its own (ANSSI PA-022): cuts never cross it
    IN_BAND = "in_band"  # through the data networks and the WAN that the cuts act on


class ManagementNetwork(_Model):
    """The network the agent administers every device from: out of band (a network of its own,
    ANSSI PA-022; every device's management address in `subnet`), or in band (`mode: in_band`:
    the agent sits in a zone of `agent_site`, the group's core, cabled to `agent_port`; `subnet`
    is that zone's subnet; each device is managed at the address of one of its own interfaces,
    through the sites' networks and the WAN, so every cut keeps the agent's management flows
    open by explicit exceptions)."""

    mode: ManagementMode = ManagementMode.OUT_OF_BAND
    subnet: ipaddress.IPv4Network
    agent_address: ipaddress.IPv4Address
    agent_site: Name | None = None  # in band: the site the agent sits at (the group's core)
    agent_port: PortSpec | None = None  # in band: the switch port the agent is cabled to

    @property
    def in_band(self) -> bool:
        return self.mode is ManagementMode.IN_BAND


class Defaults(_Model):
    ssh: SshSettings = SshSettings()
    snmp: SnmpSettings | None = None
    https: HttpsSettings | None = None


class Group(_Model):
    name: Name
    display_name: Label = ""
    timezone: str = "UTC"
    core: Name  # the site that is the group's clean core
    management: ManagementNetwork
    known_hosts: str | None = None  # path (relative to the inventory file) of pinned host keys
    # path (relative to the inventory file) of pinned certificates: "<device> sha256:<hex>" lines
    tls_pins: str | None = None
    defaults: Defaults = Defaults()
    probe_identity: ProbeIdentity | None = None  # the daemon's certificate toward probe points


# the keys of Inventory's look-up caches in its instance __dict__ (outside its fields)
_INDEX = "_cordon_lookup"
_FLOWS = "_cordon_flows"


class Inventory(_Model):
    """A whole group. Built only through `agent.inventory.load`, which also checks references."""

    group: Group
    sites: tuple[Site, ...]
    flows: tuple[Flow, ...] = ()
    _path: str = PrivateAttr(default="<memory>")

    @property
    def path(self) -> str:
        """The file this inventory was loaded from; relative references resolve beside it."""
        return self._path

    def _lookup(self) -> tuple[dict[str, Site], dict[str, tuple[Site, Device]]]:
        """name -> site and name -> (site, device), built at the first look-up for the `sites`
        tuple they were built from (a copy with other sites builds its own): a look-up is O(1),
        not a walk over every device (#18: the engine looks devices up at every step). Kept in
        the instance's `__dict__` beside the fields, outside them: equality, hashing and dumps
        see the fields only."""
        index = self.__dict__.get(_INDEX)
        if index is None or index[0] is not self.sites:
            sites: dict[str, Site] = {}
            devices: dict[str, tuple[Site, Device]] = {}
            for site in self.sites:
                sites.setdefault(site.name, site)  # the first of a name, as a walk finds it
                for device in site.devices:
                    devices.setdefault(device.name, (site, device))
            index = (self.sites, sites, devices)
            self.__dict__[_INDEX] = index  # a frozen model: its fields, not this cache
        return index[1], index[2]

    def site(self, name: str) -> Site | None:
        return self._lookup()[0].get(name)

    def find_device(self, name: str) -> tuple[Site, Device] | None:
        return self._lookup()[1].get(name)

    def devices(self) -> list[tuple[Site, Device]]:
        return [(site, device) for site in self.sites for device in site.devices]

    def flow(self, name: str) -> Flow | None:
        index = self.__dict__.get(_FLOWS)  # by name, for the `flows` tuple it was built from
        if index is None or index[0] is not self.flows:
            by_name: dict[str, Flow] = {}
            for f in self.flows:
                by_name.setdefault(f.name, f)  # the first of a name, as a walk finds it
            index = (self.flows, by_name)
            self.__dict__[_FLOWS] = index
        found: Flow | None = index[1].get(name)
        return found

    def host(self, endpoint: Endpoint) -> Host | None:
        site = self.site(endpoint.site)
        zone = site.zone(endpoint.zone) if site else None
        return zone.host(endpoint.host) if zone else None
