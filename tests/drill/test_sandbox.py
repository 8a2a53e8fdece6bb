"""The sandbox copy: every address moved into the twin's 198.18/15, relations kept (hosts in
their zone subnets, gateways, both ends of a link's /30), secrets repointed; an address it
cannot map, or a sandbox left outside the range, refused. Pure: no twin."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

import agent.platforms.registry  # noqa: F401 - registers the platforms the inventory names
from agent.drill import exercise, sandbox, scenario
from agent.errors import DrillError, SafetyError
from agent.inventory import load
from agent.inventory.models import Inventory

DATA = Path(__file__).with_name("data")
SMALL = DATA / "small-10net.yaml"


@pytest.fixture(scope="module")
def group() -> Inventory:
    return load(SMALL)


@pytest.fixture(scope="module")
def copy(group: Inventory, tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    return exercise.prepare(group, tmp_path_factory.mktemp("drill"))


def _in_sandbox(value: ipaddress.IPv4Network | ipaddress.IPv4Address) -> bool:
    if isinstance(value, ipaddress.IPv4Network):
        return value.subnet_of(sandbox.SANDBOX)
    return value in sandbox.SANDBOX


def test_the_group_itself_is_outside_the_twin_range(group: Inventory) -> None:
    outside = [w for w, v in sandbox.addresses(group) if not _in_sandbox(v)]
    assert len(outside) == len(list(sandbox.addresses(group)))
    with pytest.raises(SafetyError, match=r"outside 198\.18\.0\.0/15"):
        sandbox.check(group)


def test_every_address_moves_into_the_twin_range(copy: Inventory) -> None:
    fields = list(sandbox.addresses(copy))
    assert len(fields) > 50
    assert [w for w, v in fields if not _in_sandbox(v)] == []
    assert copy.group.management.subnet.subnet_of(sandbox.MGMT)
    for _site, device in copy.devices():
        assert device.management.address in copy.group.management.subnet
    sandbox.check(copy)  # the drill's own check passes


def test_relations_are_kept(group: Inventory, copy: Inventory) -> None:
    for old_site, new_site in zip(group.sites, copy.sites, strict=True):
        for old_zone, new_zone in zip(old_site.zones, new_site.zones, strict=True):
            assert new_zone.subnet.prefixlen == old_zone.subnet.prefixlen
            for old_host, new_host in zip(old_zone.hosts, new_zone.hosts, strict=True):
                assert new_host.address in new_zone.subnet
                offset = int(old_host.address) - int(old_zone.subnet.network_address)
                assert int(new_host.address) - int(new_zone.subnet.network_address) == offset
            if new_zone.gateway is not None:  # the gateway interface sits in its zone
                dev = new_site.device(new_zone.gateway.device)
                iface = dev.interface(new_zone.gateway.interface) if dev else None
                assert iface is not None and iface.address is not None
                assert iface.address.network == new_zone.subnet
        for link in new_site.links:  # both ends of a link keep their network
            dev = new_site.device(link.device)
            iface = dev.interface(link.interface) if dev else None
            assert iface is not None and iface.address is not None
            if link.peer_device and link.peer_interface:
                peer = copy.find_device(link.peer_device)
                assert peer is not None
                other = peer[1].interface(link.peer_interface)
                assert other is not None and other.address is not None
                assert other.address.network == iface.address.network
                assert other.address.ip != iface.address.ip
    # distinct networks stay distinct
    subnets = [z.subnet for s in copy.sites for z in s.zones]
    assert len(set(subnets)) == len(subnets)


def test_secrets_point_at_twin_files_beside_the_sandbox(group: Inventory, copy: Inventory) -> None:
    refs = {d.ssh.key for _s, d in copy.devices()}
    assert refs == {"file:secrets/ssh-key-1"}
    assert copy.group.known_hosts == "secrets/known_hosts"
    assert all(
        str(d.ssh.key).startswith("file:/etc/cordon/prod-secrets/") for _s, d in group.devices()
    )
    text = Path(copy.path).read_text()
    assert "prod-secrets" not in text and "10.18." not in text and "172.19." not in text


def test_renumbering_is_deterministic(group: Inventory) -> None:
    assert sandbox.renumber(group).document == sandbox.renumber(group).document


@pytest.mark.parametrize(
    ("field", "where"),
    [
        (("links", 0, "peer_address"), "link internet peer"),
        (("zones", 0, "hosts", 0, "address"), "hgo-core/servers/"),
    ],
)
def test_an_address_in_no_declared_network_is_refused(
    field: tuple[str | int, ...], where: str
) -> None:
    # an address in no network of the inventory: nothing says where it would move. The
    # inventory's own checks refuse these too; the renumbering does not rely on them.
    doc = yaml.safe_load(SMALL.read_text())
    holder = next(s for s in doc["sites"] if s["name"] == "hgo-core")
    for key in field[:-1]:
        holder = holder[key]
    holder[field[-1]] = "192.0.2.77"
    inv = Inventory.model_validate(doc)
    with pytest.raises(SafetyError, match=rf"{where}.*192\.0\.2\.77 is in no network"):
        sandbox.renumber(inv)


def test_a_group_too_large_for_one_twin_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(SMALL.read_text())
    internet = next(s for s in doc["sites"] if s["name"] == "internet")
    internet["zones"][0]["subnet"] = "11.0.0.0/15"  # larger than the twin's 198.18.0.0/16
    for host in internet["zones"][0].get("hosts", []):
        host["address"] = "11.0.0." + host["address"].rsplit(".", 1)[1]
    path = tmp_path / "group.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(DrillError, match=r"11\.0\.0\.0/15 is larger than the twin's whole"):
        sandbox.renumber(load(path))


def test_a_group_whose_networks_overflow_the_range_is_refused(group: Inventory) -> None:
    # 300 zones of a /24 each: more than the 256 /24s of 198.18.0.0/16
    site = next(s for s in group.sites if s.name == "bretagne-etab-3")
    zone = site.zones[0]
    zones = tuple(
        zone.model_copy(
            update={
                "name": f"z{i}",
                "subnet": ipaddress.IPv4Network(f"10.{100 + i // 256}.{i % 256}.0/24"),
                "hosts": (),
                "gateway": None,
            }
        )
        for i in range(300)
    )
    big = group.model_copy(
        update={"sites": (*group.sites, site.model_copy(update={"name": "big", "zones": zones}))}
    )
    with pytest.raises(DrillError, match="too large for one twin"):
        sandbox.renumber(big)


def test_a_sandbox_with_a_production_address_or_secret_is_refused(
    copy: Inventory, tmp_path: Path
) -> None:
    text = Path(copy.path).read_text()
    bad = tmp_path / "inventory.yaml"
    bad.write_text(text.replace("198.18.0.", "10.18.0."))
    with pytest.raises(SafetyError, match=r"outside 198\.18\.0\.0/15"):
        sandbox.check(load(bad))
    bad.write_text(text.replace("file:secrets/ssh-key-1", "file:/etc/cordon/prod/ssh"))
    with pytest.raises(SafetyError, match="never loads production secrets"):
        sandbox.check(load(bad))


def test_the_drill_refuses_a_sandbox_left_outside_the_range(
    group: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a renumbering that moved nothing (a bug): the copy is refused before any twin is built
    same = sandbox.Renumbering(document=group.model_dump(mode="json", by_alias=True))
    monkeypatch.setattr(sandbox, "renumber", lambda _inv: same)
    with pytest.raises(SafetyError, match="outside"):
        exercise.prepare(group, tmp_path)


def test_a_drill_writes_into_a_new_directory_only(group: Inventory, tmp_path: Path) -> None:
    (tmp_path / "earlier.txt").write_text("a previous record")
    sc = scenario.load(DATA / "short.yaml")
    with pytest.raises(DrillError, match="not empty"):
        exercise.play(sc, group, tmp_path, print)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.txt"]
