"""The linux_nftables driver (paramiko) against the twin's firewalls: a ruleset loaded atomically
into the agent's own table closes exactly the flows it targets, reads back rule by rule, and
removing the table reopens them; a bad ruleset is rejected with nft's own error and loads nothing;
nothing outside `table inet cordon` is ever touched."""

from __future__ import annotations

import pytest

from agent.drivers import ChangeSet, Expectation
from agent.errors import CommandRejected, DeviceError
from agent.platforms.linux_nftables.driver import nft_remove, nft_replace
from agent.platforms.registry import one_shot
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

FW = "bz2-fw1"  # a Linux firewall of the example (the others are FortiGate or Stormshield)
SITE = "bretagne-etab-2"
EHR = "198.18.85.10"  # bretagne-etab-2/servers/ehr, https

BLOCK_EHR = nft_replace(
    [
        "chain forward {",
        "  type filter hook forward priority 0; policy accept;",
        f'  ip daddr {EHR} tcp dport 443 drop comment "test:block-ehr"',
        "}",
    ],
    action="test.block_ehr",
)


def ehr_flows(lab: Lab) -> set[str]:
    return {
        f.name
        for f in lab.inv.flows
        if (f.destination.site, f.destination.zone, f.destination.host) == (SITE, "servers", "ehr")
        and f.destination.service == "https"
    }


def test_ruleset_loads_reads_back_and_is_removed_exactly(lab: Lab) -> None:
    """Our table's drop rule closes exactly the EHR https flows through the firewall; removing
    our table reopens them and leaves the twin's own table byte for byte as it was."""
    expected = ehr_flows(lab)
    assert expected >= {"bz2-pharmacy-ehr", "bz2-admin-ehr", "bz2-remote-ehr"}
    base_before = th.nft_table(lab, FW, "twin_base")
    assert base_before
    with one_shot(th.target(lab, FW)) as drv:
        try:
            drv.apply(BLOCK_EHR)
            drv.verify(Expectation(table_present=True, rule_comments=frozenset({"test:block-ehr"})))
            assert 'comment "test:block-ehr"' in th.nft_table(lab, FW, "cordon")
            assert wait_for(lambda: th.closed(lab) == expected, timeout=10)
            backup = drv.backup()
            assert backup.ours is not None and "test:block-ehr" in backup.ours
            again = drv.apply(BLOCK_EHR)  # replacing is idempotent: still one rule
            assert again.commands == BLOCK_EHR.commands
            drv.verify(Expectation(rule_comments=frozenset({"test:block-ehr"})))
        finally:
            drv.apply(nft_remove(action="test.undo"))
        drv.verify(Expectation(table_present=False))
    assert th.nft_table(lab, FW, "cordon") == ""
    assert th.nft_table(lab, FW, "twin_base") == base_before
    assert wait_for(lambda: th.closed(lab) == set(), timeout=15)
    outcomes = [r["outcome"] for r in th.audit_records("device.change", FW)[-3:]]
    assert outcomes == ["ok", "ok", "ok"]


def test_bad_ruleset_is_rejected_with_nft_output_and_loads_nothing(lab: Lab) -> None:
    """A syntax error fails `nft -c`: CommandRejected carries nft's message; no table appears."""
    bad = nft_replace(["chain forward {", f"  ip daddr {EHR} dorp", "}"], action="test.bad")
    with one_shot(th.target(lab, FW)) as drv:
        with pytest.raises(CommandRejected) as info:
            drv.apply(bad)
        assert info.value.device == FW and info.value.command == "nft -c -f -"
        assert "syntax error" in info.value.output
        drv.verify(Expectation(table_present=False))  # same session, still usable
    assert th.nft_table(lab, FW, "cordon") == ""
    assert th.audit_records("device.change", FW)[-1]["outcome"] == "rejected"


@pytest.mark.parametrize(
    "script",
    [
        ("flush ruleset",),
        ("delete table inet twin_base",),
        ("table inet cordon { }", "flush ruleset"),
    ],
)
def test_script_outside_our_table_is_refused_before_sending(
    lab: Lab, script: tuple[str, ...]
) -> None:
    """A change set that would touch the ruleset or another table never reaches the device."""
    base_before = th.nft_table(lab, FW, "twin_base")
    with (
        one_shot(th.target(lab, FW)) as drv,
        pytest.raises(DeviceError, match="refused before sending"),
    ):
        drv.apply(ChangeSet(script))
    assert th.nft_table(lab, FW, "twin_base") == base_before
    assert th.nft_table(lab, FW, "cordon") == ""


def test_facts_show_interfaces_counters_and_ruleset(lab: Lab) -> None:
    """Facts list the firewall's interfaces with states and counters, and its running ruleset."""
    with one_shot(th.target(lab, FW)) as drv:
        facts = drv.facts()
    mgmt = facts.interface("mgmt0")
    assert mgmt is not None and mgmt.admin_up and mgmt.oper_up and mgmt.in_octets
    routed = {i.name for i in th.target(lab, FW).device.interfaces if i.address is not None}
    assert len(routed) > 5
    assert routed | {"mgmt0"} <= {i.name for i in facts.interfaces}
    assert "table inet twin_base" in facts.config and facts.ours == ""
