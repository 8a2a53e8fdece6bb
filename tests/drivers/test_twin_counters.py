"""The counters the recovery soak gate reads, against the twin: a watch rule of the agent's table
(no verdict) counts exactly the new connections made through it, a drop rule counts what it
drops, rules without counter or comment are left out, an absent table reads as {}; SNMP
interface counters (ifHC* over SNMPv3 authPriv) grow with the traffic that really passed, within
what the kernel counted before and after; the 32-bit ifTable is the fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.drivers import Driver, Pool
from agent.errors import SnmpError
from agent.lab import netns
from agent.lab.probe import ProbeTarget, Status, probe_tcp
from agent.platforms.capabilities import Counters, IfCounters, InterfaceCounters
from agent.platforms.linux_nftables.driver import counter_packets, nft_remove, nft_replace
from agent.platforms.registry import one_shot
from agent.platforms.snmp.driver import SnmpDriver
from agent.platforms.snmp.mib import HC_COUNTERS, IF_COUNTERS
from tests.drivers import twinhelp as th
from tests.drivers.twinhelp import Lab
from tests.lab.twinops import wait_for

FW = "bz2-fw1"  # a Linux firewall of the example: the watch rules below are nftables'
ADMIN = "bretagne-etab-2/admin/pc-admin-1"  # 198.18.86.10, zone admin behind lan0.190
EHR = ("198.18.85.10", 443, "CORDON bretagne-etab-2/servers/ehr https")
LIS = ("198.18.85.11", 5001)  # bretagne-etab-2/servers/lis astm
WATCH = "reconnect admin: watch #1a2b3c4d"
DROP = "block admin to lis #9f8e7d6c"

TABLE = nft_replace(
    [
        "chain forward {",
        "  type filter hook forward priority 0; policy accept;",
        f'  iifname "lan0.190" ip daddr {LIS[0]} tcp dport {LIS[1]} counter drop comment "{DROP}"',
        f'  iifname "lan0.190" oifname "lan0.180" ct state new counter comment "{WATCH}"',
        '  iifname "lan0.200" counter',  # a counter without a comment: not reported
        '  iifname "lan0.190" oifname "lan0.180" accept comment "no counter here"',
        "}",
    ],
    action="test.counters",
)


# ------------------------------------------------------------------ without the twin (pure)


def test_counter_packets_reads_the_rules_own_counter() -> None:
    assert counter_packets(json.dumps([{"match": {}}, {"counter": {"packets": 7, "bytes": 420}}]))
    assert counter_packets(json.dumps([{"counter": {"packets": 7, "bytes": 1}}])) == 7
    assert counter_packets(json.dumps([{"drop": None}])) is None
    assert counter_packets(json.dumps([{"counter": "named"}])) is None  # a named counter's ref
    with pytest.raises(ValueError, match="packet count"):
        counter_packets(json.dumps([{"counter": {"bytes": 1}}]))
    with pytest.raises(ValueError, match="not JSON"):
        counter_packets("{nope")


class _OldAgent(SnmpDriver):
    """An SNMP agent with ifTable but no ifXTable row for index 3 (no GETs on the wire)."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def interface_index(self, name: str, operation: str = "lookup") -> int:
        if name not in ("eth0", "eth1"):
            raise SnmpError("old", operation, f"no interface {name!r} in ifTable")
        return 2 if name == "eth0" else 3

    def _get(self, operation: str, oids: Any, *, allow_missing: bool = False) -> dict[str, Any]:
        assert allow_missing
        self.asked.append(list(oids))
        table = {f"{c}.2": 10 + i for i, c in enumerate(HC_COUNTERS)}
        table |= {f"{c}.3": 20 + i for i, c in enumerate(IF_COUNTERS)}
        return {o: table.get(o) for o in oids}


def test_interface_counters_fall_back_to_the_32_bit_table() -> None:
    drv = _OldAgent()
    assert drv.interface_counters(["eth0", "eth1", "eth0"]) == {
        "eth0": IfCounters(10, 11, 12, 13),
        "eth1": IfCounters(20, 21, 22, 23),
    }
    assert drv.asked[1] == [f"{c}.3" for c in IF_COUNTERS]  # only eth1 asked again
    assert drv.interface_counters([]) == {}
    with pytest.raises(SnmpError, match="no interface 'eth9'"):
        drv.interface_counters(["eth9"])


# ------------------------------------------------------------------------------ on the twin


def _ns(lab: Lab) -> str:
    return lab.bp.host_ns[ADMIN]


def _read(d: Driver) -> dict[str, int]:
    assert isinstance(d, Counters)
    return d.rule_counters()


@pytest.mark.twin
def test_watch_rule_counts_exactly_the_new_connections(lab: Lab) -> None:
    """7 connections from the admin zone to the EHR: the watch rule counts 7, not a packet
    more; 3 attempts to the lab system are dropped and counted by the drop rule, not by the
    watch rule behind it. The pool reads the same; no table reads as {}."""
    ehr = ProbeTarget(_ns(lab), EHR[0], EHR[1], EHR[2])
    lis = ProbeTarget(_ns(lab), LIS[0], LIS[1])
    with one_shot(th.target(lab, FW)) as drv:
        assert isinstance(drv, Counters)
        assert drv.rule_counters() == {}
        try:
            drv.apply(TABLE)
            assert drv.rule_counters() == {WATCH: 0, DROP: 0}
            made = probe_tcp([ehr] * 7, timeout=10)
            assert [r.status for r in made] == [Status.OK] * 7
            assert drv.rule_counters() == {WATCH: 7, DROP: 0}
            dropped = probe_tcp([lis] * 3, timeout=0.5)
            assert [r.status for r in dropped] == [Status.TIMEOUT] * 3
            after = drv.rule_counters()
            assert after[WATCH] == 7 and after[DROP] >= 3  # a slow machine may retransmit a SYN
            with Pool(lab.inv, keepalive=None) as pool:
                assert pool.run(FW, _read) == drv.rule_counters()
        finally:
            drv.apply(nft_remove(action="test.undo"))
        assert drv.rule_counters() == {}
    assert th.nft_table(lab, FW, "cordon") == ""


def _kernel(lab: Lab, ifname: str) -> dict[str, int]:
    out = netns.run(["ip", "-j", "-s", "link", "show", ifname], netns=lab.bp.device_ns[FW]).stdout
    stats = json.loads(out)[0]["stats64"]
    return {"rx": int(stats["rx"]["bytes"]), "tx": int(stats["tx"]["bytes"])}


@pytest.mark.twin
def test_snmp_interface_counters_grow_with_real_traffic(lab: Lab) -> None:
    """40 connections from the admin zone to the EHR cross the firewall in on lan0.190 and out on
    lan0.180: SNMP sees both interfaces' unicast packets and octets grow by at least two packets
    a connection each way, and its octets sit between the kernel's before and after."""
    n = 40
    names = ["lan0.190", "lan0.180"]
    ehr = ProbeTarget(_ns(lab), EHR[0], EHR[1], EHR[2])
    with one_shot(th.target(lab, FW), via="snmp") as drv:
        assert isinstance(drv, InterfaceCounters)
        kernel_before = {i: _kernel(lab, i) for i in names}
        before = drv.interface_counters(names)
        assert set(before) == set(names)
        made = probe_tcp([ehr] * n, timeout=15)
        assert [r.status for r in made] == [Status.OK] * n
        grown: dict[str, IfCounters] = {}

        def grew() -> bool:
            grown.update(drv.interface_counters(names))
            return all(
                grown[i].in_ucast_pkts - before[i].in_ucast_pkts >= 2 * n
                and grown[i].out_ucast_pkts - before[i].out_ucast_pkts >= 2 * n
                for i in names
            )

        assert wait_for(grew, timeout=60, step=0.5)  # snmpd caches its tables for seconds
        kernel_after = {i: _kernel(lab, i) for i in names}
        with Pool(lab.inv, keepalive=None) as pool:
            pooled = pool.run(FW, lambda d: _if_read(d, names), via="snmp")
    for i in names:
        assert grown[i].in_octets - before[i].in_octets >= 2 * n * 54  # min. TCP/IP/Ethernet
        assert grown[i].out_octets - before[i].out_octets >= 2 * n * 54
        assert kernel_before[i]["rx"] <= grown[i].in_octets <= kernel_after[i]["rx"]
        assert kernel_before[i]["tx"] <= grown[i].out_octets <= kernel_after[i]["tx"]
        assert pooled[i].in_octets >= grown[i].in_octets


def _if_read(d: Driver, names: list[str]) -> dict[str, IfCounters]:
    assert isinstance(d, InterfaceCounters)
    return d.interface_counters(names)


@pytest.mark.twin
def test_snmp_unknown_interface_is_an_error(lab: Lab) -> None:
    with one_shot(th.target(lab, FW), via="snmp") as drv:
        assert isinstance(drv, InterfaceCounters)
        with pytest.raises(SnmpError, match="no interface 'nope0'"):
            drv.interface_counters(["lan0.190", "nope0"])
