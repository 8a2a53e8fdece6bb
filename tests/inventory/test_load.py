"""The inventory loads the shipped example and rejects each kind of bad input with file, path,
line and cause."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import InventoryError
from agent.inventory import load
from agent.inventory.models import Criticality, SiteKind
from agent.inventory.select import Selector, select_devices, select_sites, select_zones
from scripts.synth import hospi_grand_ouest

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "hospi-grand-ouest.yaml"


def write(tmp_path: Path, doc: Any, name: str = "inv.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def problems(tmp_path: Path, doc: Any) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load(write(tmp_path, doc))
    return [str(i) for i in info.value.issues]


@pytest.fixture
def doc() -> dict[str, Any]:
    return copy.deepcopy(hospi_grand_ouest())


def site(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["sites"] if s["name"] == name)


def test_example_loads_with_expected_shape() -> None:
    """The shipped Hospi Grand Ouest inventory loads: 9 establishments, a core, 3 external sides."""
    inv = load(EXAMPLE)
    kinds = [s.kind for s in inv.sites]
    assert kinds.count(SiteKind.ESTABLISHMENT) == 9
    assert kinds.count(SiteKind.CORE) == 1
    assert kinds.count(SiteKind.EXTERNAL) == 3
    sagesse = inv.site("rennes-la-sagesse")
    assert sagesse is not None and sagesse.city == "Rennes"
    assert {z.name for z in sagesse.zones} >= {
        "icu",
        "neonatology",
        "imaging",
        "lab",
        "servers",
        "admin",
        "guest",
        "management",
    }
    assert any(f.must_survive and f.name == "rns-icu-monitoring" for f in inv.flows)


def test_example_file_is_generated_from_synth() -> None:
    """The committed example is exactly what the generator produces (no hand drift)."""
    assert yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")) == hospi_grand_ouest()


def test_defaults_resolved_into_devices() -> None:
    """Group SSH/SNMP defaults are merged into each device at load time."""
    inv = load(EXAMPLE)
    _, dev = inv.devices()[0]
    assert dev.ssh.username == "root"
    assert dev.ssh.key == "file:.secrets/ssh/cordon_ed25519"
    assert dev.snmp is not None and dev.snmp.priv == "file:.secrets/snmp/priv"


def test_device_override_beats_default(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A device's own SSH setting wins over the group default; others still come from it."""
    site(doc, "hgo-core")["devices"][0]["ssh"] = {"port": 2222}
    inv = load(write(tmp_path, doc))
    dev = inv.find_device("core-fw1")
    assert dev is not None
    assert dev[1].ssh.port == 2222 and dev[1].ssh.username == "root"


def test_unknown_key_named_with_line(tmp_path: Path, doc: dict[str, Any]) -> None:
    """An unknown key is reported with its path and line."""
    site(doc, "rennes-la-sagesse")["devices"][0]["colour"] = "red"
    path = write(tmp_path, doc)
    with pytest.raises(InventoryError) as info:
        load(path)
    (issue,) = info.value.issues
    assert issue.path == "sites[1].devices[0].colour"
    assert issue.line is not None
    assert "colour" in path.read_text().splitlines()[issue.line - 1]
    assert "unknown key" in issue.message


def test_wrong_type(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A VLAN that is not a number is refused at its path."""
    site(doc, "rennes-la-sagesse")["zones"][0]["vlan"] = "eleven"
    (msg,) = problems(tmp_path, doc)
    assert "sites[1].zones[0].vlan" in msg


def test_wrong_enum(tmp_path: Path, doc: dict[str, Any]) -> None:
    """An unknown criticality is refused, listing the valid ones."""
    site(doc, "rennes-la-sagesse")["zones"][0]["criticality"] = "important"
    (msg,) = problems(tmp_path, doc)
    assert "criticality" in msg and "life_critical" in msg


def test_dangling_flow_zone(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A flow to a zone that does not exist names the flow and the missing zone."""
    doc["flows"][0]["to"] = "rennes-la-sagesse/nowhere/central-station:hl7"
    (msg,) = problems(tmp_path, doc)
    assert "flows[0].to" in msg and "zone 'nowhere'" in msg


def test_flow_to_undeclared_service(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A flow to a service the host does not offer is refused, listing what it does offer."""
    doc["flows"][0]["to"] = "hgo-core/servers/dpi-central:telnet"
    (msg,) = problems(tmp_path, doc)
    assert "service 'telnet'" in msg and "https" in msg


def test_link_on_unknown_interface(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A link carried by an interface the device does not have is a dangling reference."""
    site(doc, "nantes-jules-verne")["links"][0]["interface"] = "inet9"
    (msg,) = problems(tmp_path, doc)
    assert "links[0]" in msg and "inet9" in msg


def test_unregistered_platform_named_with_line_and_the_registered_ones(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    """A platform no one registered is refused at its path and line, listing the registered ones
    (the inventory's platform list is the registry's, not a list of its own)."""
    site(doc, "rennes-la-sagesse")["devices"][1]["platform"] = "acme_os"
    path = write(tmp_path, doc)
    with pytest.raises(InventoryError) as info:
        load(path)
    (issue,) = info.value.issues
    assert issue.file == str(path) and issue.path == "sites[1].devices[1].platform"
    assert issue.line is not None
    assert "acme_os" in path.read_text().splitlines()[issue.line - 1]
    assert "no platform 'acme_os' is registered" in issue.message
    assert "cisco_ios" in issue.message and "linux_nftables" in issue.message


def test_malformed_platform_name_refused(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A platform value that is not a name (it reaches module paths and messages) is refused."""
    site(doc, "rennes-la-sagesse")["devices"][1]["platform"] = "Cisco IOS; reload"
    (msg,) = problems(tmp_path, doc)
    assert "sites[1].devices[1].platform" in msg and "not a valid platform name" in msg


def test_kernel_interface_names_checked_for_a_platform_whose_spec_says_so(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    """linux_nftables' Spec says its interface names are kernel names: a Junos-style name on the
    firewall is refused at its path."""
    site(doc, "rennes-la-sagesse")["devices"][0]["interfaces"][0]["name"] = "ge-0/0/1"
    msgs = problems(tmp_path, doc)
    assert any(
        "sites[1].devices[0].interfaces[0].name" in m and "not a valid Linux interface name" in m
        for m in msgs
    )


def test_duplicate_names(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Duplicate zone names in a site and duplicate device names in the group are refused."""
    s = site(doc, "nantes-jules-verne")
    s["zones"][1]["name"] = s["zones"][0]["name"]
    site(doc, "fontenay-sud-vendee")["devices"][0]["name"] = "nts-fw1"
    msgs = problems(tmp_path, doc)
    assert any("duplicate zone 'icu'" in m for m in msgs)
    assert any("device 'nts-fw1' is already defined" in m for m in msgs)


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    """A key written twice in one mapping is reported (YAML would silently keep the last)."""
    text = EXAMPLE.read_text().replace(
        "  timezone: Europe/Paris\n", "  timezone: Europe/Paris\n  timezone: UTC\n", 1
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load(path)
    assert any(
        i.path == "group.timezone" and "duplicate key" in i.message for i in info.value.issues
    )


def test_host_outside_subnet(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A host address outside its zone subnet is refused."""
    site(doc, "rennes-la-sagesse")["zones"][0]["hosts"][0]["address"] = "198.18.99.10"
    msgs = problems(tmp_path, doc)
    assert any("outside the zone subnet" in m for m in msgs)


def test_management_outside_network(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A device management address outside the management network is refused."""
    site(doc, "rennes-la-sagesse")["devices"][0]["management"]["address"] = "198.18.250.250"
    msgs = problems(tmp_path, doc)
    assert any("outside the management network" in m for m in msgs)


def test_overlapping_subnets(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Two zones with overlapping subnets are refused."""
    a = site(doc, "rennes-la-sagesse")["zones"][0]
    b = site(doc, "nantes-jules-verne")["zones"][0]
    b["subnet"] = a["subnet"]
    for h in b["hosts"]:
        h["address"] = h["address"].replace(b["subnet"].split(".")[2], a["subnet"].split(".")[2])
    msgs = problems(tmp_path, doc)
    assert any("overlaps" in m for m in msgs)


@pytest.mark.parametrize(
    "name",
    ["gi1; reload", "gi1\nshutdown", "gi 1", "$(reboot)", "gi1|x", "-rf", "a" * 60, "gi1//2"],
)
def test_interface_name_injection(tmp_path: Path, doc: dict[str, Any], name: str) -> None:
    """Interface names that could inject commands into a device CLI are refused."""
    site(doc, "rennes-la-sagesse")["devices"][1]["interfaces"][1]["name"] = name
    msgs = problems(tmp_path, doc)
    assert any("not a safe interface name" in m for m in msgs)


@pytest.mark.parametrize(
    "text",
    ["ICU\nend\nreload", "uplink; shutdown", "x `id`", "a" * 121, 'quote" here', "esc\x1b[2J"],
)
def test_description_injection(tmp_path: Path, doc: dict[str, Any], text: str) -> None:
    """Interface descriptions with control characters or CLI metacharacters are refused."""
    site(doc, "rennes-la-sagesse")["devices"][1]["interfaces"][1]["description"] = text
    msgs = problems(tmp_path, doc)
    assert any("description" in m for m in msgs)


def test_secret_value_instead_of_reference(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A literal password in the inventory is refused: secrets are references only."""
    doc["group"]["defaults"]["ssh"]["password"] = "hunter2"
    msgs = problems(tmp_path, doc)
    assert any("by reference only" in m for m in msgs)
    assert not any("hunter2" in m for m in msgs)


def test_snmp_v3_needs_authpriv(tmp_path: Path, doc: dict[str, Any]) -> None:
    """SNMPv3 without a privacy passphrase is refused (authPriv by default)."""
    del doc["group"]["defaults"]["snmp"]["priv"]
    msgs = problems(tmp_path, doc)
    assert any("authPriv" in m for m in msgs)


def test_no_host_key_pin(tmp_path: Path, doc: dict[str, Any]) -> None:
    """Without a pinned host key or known_hosts, every device is refused."""
    del doc["group"]["known_hosts"]
    msgs = problems(tmp_path, doc)
    assert any("no pinned host key" in m for m in msgs)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with its line."""
    path = tmp_path / "bad.yaml"
    path.write_text("group:\n  name: x\n  core: [unclosed\n")
    with pytest.raises(InventoryError) as info:
        load(path)
    (issue,) = info.value.issues
    assert "YAML syntax error" in issue.message and issue.line is not None


def test_missing_file() -> None:
    """A missing inventory file is a clear error."""
    with pytest.raises(InventoryError, match="no such inventory file"):
        load(Path("/nonexistent/inv.yaml"))


def test_selectors() -> None:
    """Selectors pick establishments by tag, devices by role, zones by criticality."""
    inv = load(EXAMPLE)
    vendee = select_sites(inv, Selector(site_tags=("vendee",)))
    assert {s.name for s in vendee} == {"saint-gilles-villa-notre-dame", "fontenay-sud-vendee"}
    assert all(s.kind is SiteKind.ESTABLISHMENT for s in select_sites(inv, Selector()))
    fws = select_devices(inv, Selector(roles=("edge_firewall",)))  # type: ignore[arg-type]
    # the example's mix: 3 FortiGates, 3 Stormshield SNS, 3 Linux firewalls (scripts/synth.py)
    assert {d.name: d.platform for _, d in fws} == {
        "rns-fw1": "fortigate", "stn-fw1": "fortigate", "nts-fw1": "fortigate",
        "sgv-fw1": "stormshield", "fnt-fw1": "stormshield", "bz1-fw1": "stormshield",
        "bz2-fw1": "linux_nftables", "bz3-fw1": "linux_nftables", "bz4-fw1": "linux_nftables",
    }  # fmt: skip
    life = select_zones(
        inv, Selector(sites=("rennes-la-sagesse",), criticality=(Criticality.LIFE_CRITICAL,))
    )
    assert {z.name for _, z in life} == {"icu", "neonatology", "biomedical", "telephony"}
