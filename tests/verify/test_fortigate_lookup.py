"""The FortiGate twin's policy lookup (`monitor/firewall/policy-lookup`), pure: the first enabled
policy of the table whose interfaces, addresses and service match, 0 (the implicit deny) when
none does; and it agrees with the twin's packet filter built from the same table (the nft
ruleset `twin_nft.ruleset` loads, evaluated by the nftables evaluator) on every probe below."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from agent.platforms.capabilities import FlowQuery, Verdict
from agent.platforms.fortigate import twin_nft
from agent.platforms.linux_nftables.evaluate import decide, load

ADDRESSES = {
    "lab": {"name": "lab", "subnet": "198.18.23.0 255.255.255.0"},
    "lis": {"name": "lis", "subnet": "198.18.27.11 255.255.255.255"},
}
SERVICES = {
    "lis": {"name": "lis", "tcp-portrange": "5001"},
    "web": {"name": "web", "tcp-portrange": "8000-8100:1024-65535"},
}


def ref(*names: str) -> list[dict[str, str]]:
    return [{"name": n} for n in names]


def policy(pid: int, action: str, **kw: Any) -> dict[str, Any]:
    return {
        "policyid": pid,
        "action": action,
        "srcintf": ref(*kw.get("srcintf", ["any"])),
        "dstintf": ref(*kw.get("dstintf", ["any"])),
        "srcaddr": ref(*kw.get("srcaddr", ["all"])),
        "dstaddr": ref(*kw.get("dstaddr", ["all"])),
        "service": ref(*kw.get("service", ["ALL"])),
        "status": kw.get("status", "enable"),
    }


TABLE = [
    policy(1, "deny", status="disable"),
    policy(
        2,
        "accept",
        srcintf=["lan0.140"],
        dstintf=["lan0.180"],
        srcaddr=["lab"],
        dstaddr=["lis"],
        service=["lis"],
    ),
    policy(3, "deny", srcintf=["lan0.140"], service=["web"]),
    policy(4, "accept", dstintf=["wan1"]),
]
CASES = [
    # (srcintf, dstintf, src, dst, port) -> policy
    (("lan0.140", "lan0.180", "198.18.23.10", "198.18.27.11", 5001), 2),
    (("lan0.140", "lan0.180", "198.18.23.10", "198.18.27.11", 5002), 0),
    (("lan0.140", "lan0.180", "198.18.23.10", "198.18.27.12", 5001), 0),
    (("lan0.150", "lan0.180", "198.18.23.10", "198.18.27.11", 5001), 0),
    (("lan0.140", "wan1", "198.18.23.10", "198.18.99.1", 8050), 3),
    (("lan0.140", "wan1", "198.18.23.10", "198.18.99.1", 443), 4),
]


@pytest.mark.parametrize(("packet", "want"), CASES)
def test_first_match_then_the_implicit_deny(packet: tuple[Any, ...], want: int) -> None:
    srcintf, dstintf, src, dst, port = packet
    got = twin_nft.lookup(
        TABLE, ADDRESSES, SERVICES, srcintf=srcintf, dstintf=dstintf, src=src, dst=dst, port=port
    )
    assert got == want


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None,
    reason="SKIPPED: loading the twin's nft script in a throwaway network namespace needs root",
)
def test_the_lookup_agrees_with_the_twins_own_filter() -> None:
    """The same table as the twin's nftables forward chain (what really filters its packets):
    loaded by nft in a throwaway network namespace, read back as `nft -j list ruleset`,
    evaluated for each case's first packet: the verdict of the policy the lookup names."""
    rs = twin_nft.ruleset(TABLE, [], ADDRESSES, SERVICES)
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", "nft -f - && nft -j list ruleset"],
        input=twin_nft.script(rs, None),
        capture_output=True,
        text=True,
        check=True,
    )
    chains = load(done.stdout)
    for (srcintf, dstintf, src, dst, port), want in CASES:
        got = decide(chains, FlowQuery(srcintf, dstintf, src, dst, None, port))
        action = next((p["action"] for p in TABLE if p["policyid"] == want), "deny")
        assert got.verdict is (Verdict.ACCEPT if action == "accept" else Verdict.DROP), got
