"""The twin's readiness check (`agent.lab.ready`): `lab up` returns only when every declared flow
works; otherwise a LabError (exit 9) names the flows, the device and the hop where the packets
stop. Each test breaks one hop by hand, as a fault on a real network would, and restores it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.errors import LabError
from agent.inventory import load
from agent.lab import build, daemons, netns, ready
from agent.lab.state import LabState
from tests.conftest import Twin
from tests.lab.test_twin_lifecycle import small_inventory

pytestmark = pytest.mark.twin

# bretagne-etab-3's trunk leg of the biomedical VLAN: the AOS-CX uplink 1/1/49, VLAN 120 (the
# twin has no 802.1Q: one veth per VLAN, named by the kernel)
SWITCH, TRUNK = "bz3-sw1", "1-1-49.120"
CORE_FW, WAN = "core-fw1", "wan-bz3"
DROP = (
    "table inet readytest {\n chain ready_drop {\n  type filter hook forward priority 0;\n"
    f'  iifname "{WAN}" drop\n }}\n}}\n'
)


def test_a_port_taken_down_is_named_with_its_device_and_flow(twin: Twin) -> None:
    """A switch trunk port set down by hand: the check fails at once (waiting cannot help),
    exit 9, naming the device and the interface; the flow check names the flow it breaks and
    that same hop. With the port back up, the same check passes (the kernel settles)."""
    ns = twin.bp.device_ns[SWITCH]
    netns.run(["ip", "link", "set", TRUNK, "down"], netns=ns)
    try:
        with pytest.raises(LabError) as links:
            ready.check(twin.inv, twin.bp, within=5.0)
        assert links.value.exit_code == 9
        assert f"device {SWITCH}: {TRUNK} administratively down" in str(links.value)
        with pytest.raises(LabError) as by_flow:
            ready.wait_flows(twin.inv, twin.bp, time.monotonic())
        text = str(by_flow.value)
        assert by_flow.value.exit_code == 9
        assert "1 of 135 declared flows do not work" in text
        assert "flow bz3-vendor-maint (" in text
        assert f"stops at device {SWITCH}: {TRUNK} administratively down" in text
    finally:
        netns.run(["ip", "link", "set", TRUNK, "up"], netns=ns)
    assert len(ready.check(twin.inv, twin.bp)) == len(twin.inv.flows)


def test_a_router_that_drops_is_named_with_its_hop(twin: Twin) -> None:
    """The core firewall drops what comes in from bretagne-etab-3's WAN link (an nft rule added
    by hand): every link is up, so only the flow walk can find it: the two flows from that site
    to the core are named, stopping at the core firewall, hop wan-bz3 -> the core zones."""
    ns = twin.bp.device_ns[CORE_FW]
    netns.run(["nft", "-f", "-"], netns=ns, input=DROP)
    try:
        with pytest.raises(LabError) as exc:
            ready.check(twin.inv, twin.bp, within=1.0)
        text = str(exc.value)
        assert exc.value.exit_code == 9
        assert "2 of 135 declared flows do not work" in text
        for flow, zone_if in (("bz3-backup-core", "lan0.310"), ("bz3-ehr-core", "lan0.300")):
            line = next(ln for ln in text.splitlines() if f"flow {flow} (" in ln)
            assert f"stops at device {CORE_FW}: " in line
            assert "does not forward host bretagne-etab-3/servers/" in line
            assert f"(hop {CORE_FW} {WAN} -> {zone_if})" in line
    finally:
        netns.run(["nft", "delete", "table", "inet", "readytest"], netns=ns)
    assert len(ready.check(twin.inv, twin.bp)) == len(twin.inv.flows)


@pytest.mark.twin_lifecycle
def test_lab_up_does_not_return_a_twin_whose_flow_is_broken(
    twin_lock: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port goes down while the twin is being built (just before its zone services start):
    `lab up` does not return a twin with a broken flow. Past the bound (here 3 s) it raises
    LabError (exit 9) naming the flow, the device and the port, and leaves nothing up."""
    inv = load(small_inventory(tmp_path))
    monkeypatch.setenv("CORDON_LAB_READY_S", "3")
    real = daemons.start_services

    def port_down_then_services(spec_path: Path, state_dir: Path) -> daemons.DaemonProc:
        netns.run(["ip", "link", "set", "gi1", "down"], netns="cdn.rns-sw1")
        return real(spec_path, state_dir)

    monkeypatch.setattr(daemons, "start_services", port_down_then_services)
    with pytest.raises(LabError) as exc:
        build.up(inv)
    text = str(exc.value)
    assert exc.value.exit_code == 9
    assert "flow rns-icu-monitoring (" in text
    assert "stops at device rns-sw1: gi1 administratively down" in text
    assert LabState.load(build.DEFAULT_LAB) is None
    assert not netns.exists("cdn.rns-sw1")
