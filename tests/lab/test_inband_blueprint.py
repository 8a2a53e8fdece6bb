"""The blueprint of a group managed in band (pure, no twin): no out-of-band network, the root
veth is the agent's port at the core, the root reaches the data networks through it only, and
devices answer on their data addresses. The out-of-band blueprint keeps its management bridge."""

from __future__ import annotations

import ipaddress

import pytest

from agent.errors import SafetyError
from agent.inventory import load
from agent.lab import build
from agent.lab.topology import ROOT_LINK, blueprint
from tests.conftest import EXAMPLE, ROOT

INBAND = ROOT / "tests" / "data" / "hgo-inband.yaml"


def test_in_band_blueprint_has_no_oob_and_one_root_veth_at_the_agent_port() -> None:
    bp = blueprint(load(INBAND))
    assert bp.in_band
    assert not any(n.kind == "oob" for n in bp.nodes.values())
    root = [v for v in bp.veths if v.b_ns == ""]
    assert [(v.a_ns, v.a_if, v.b_if) for v in root] == [("cdn.core-sw1", "gi10", ROOT_LINK)]
    (agent_bridge,) = [b for b in bp.bridges if "gi10" in b.ports and b.ns == "cdn.core-sw1"]
    assert agent_bridge.name == "vl330"
    assert bp.root_address == ipaddress.IPv4Interface("198.19.0.100/24")
    assert bp.root_routes == [
        (ipaddress.IPv4Network("198.18.0.0/16"), ipaddress.IPv4Address("198.19.0.1"))
    ]
    addresses = {(a.ns, a.ifname, str(a.cidr)) for a in bp.addresses}
    assert ("cdn.rns-fw1", "wan0", "198.18.232.1/30") in addresses
    assert ("cdn.rns-sw2", "vl990", "198.18.18.3/24") in addresses
    assert ("cdn.core-fw1", "lan0.330", "198.19.0.1/24") in addresses


def test_out_of_band_blueprint_keeps_its_management_bridge() -> None:
    bp = blueprint(load(EXAMPLE))
    assert not bp.in_band and bp.root_routes == []
    assert next(v for v in bp.veths if v.b_ns == "").a_ns == "cdn.oob"


@pytest.mark.parametrize("dst", ["10.0.0.0/8", "198.18.0.0/15", "0.0.0.0/0"])
def test_root_route_outside_the_sandbox_is_refused(dst: str) -> None:
    with pytest.raises(SafetyError):
        build._root_route(ipaddress.IPv4Network(dst), ipaddress.IPv4Address("198.19.0.1"))
