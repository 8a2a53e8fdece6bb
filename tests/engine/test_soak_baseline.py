"""The soak gate's decisions and the baseline comparison, without the twin."""

from __future__ import annotations

from agent.engine import baseline
from agent.engine.soak import Anomaly, Sample, evaluate

WATCH = {
    "rns-fw1": {"admin: reconnect admin #1": "admin", "servers: reconnect servers #2": "servers"}
}


def sample(at: float, admin: int, servers: int, uplink: int | None = None) -> Sample:
    return Sample(
        at,
        {"rns-fw1": {"admin: reconnect admin #1": admin, "servers: reconnect servers #2": servers}},
        {} if uplink is None else {"rns-fw1 wan0": uplink},
    )


def test_first_sample_is_a_baseline() -> None:
    assert evaluate(None, sample(10.0, 500, 0), WATCH, max_new_per_s=1, max_uplink_pps=None) == []


def test_a_burst_blames_the_zone_it_came_from() -> None:
    found = evaluate(
        sample(10.0, 3, 7), sample(11.0, 40, 8), WATCH, max_new_per_s=2.0, max_uplink_pps=None
    )
    assert [a.zone for a in found] == ["admin"]
    assert "37 new connections" in found[0].what
    assert "max 2/s" in found[0].what


def test_rate_is_per_second_over_the_real_interval() -> None:
    # 10 connections over 10 s (a restart stretched the interval) is 1/s: allowed at 1/s
    quiet = evaluate(
        sample(0.0, 0, 0), sample(10.0, 10, 0), WATCH, max_new_per_s=1.0, max_uplink_pps=None
    )
    assert quiet == []
    busy = evaluate(
        sample(0.0, 0, 0), sample(10.0, 11, 0), WATCH, max_new_per_s=1.0, max_uplink_pps=None
    )
    assert [a.zone for a in busy] == ["admin"]


def test_a_missing_counter_is_an_anomaly_and_a_new_zone_starts_later() -> None:
    prev = Sample(0.0, {"rns-fw1": {"servers: reconnect servers #2": 1}})
    cur = Sample(1.0, {"rns-fw1": {"servers: reconnect servers #2": 1}})
    found = evaluate(prev, cur, WATCH, max_new_per_s=1.0, max_uplink_pps=None)
    assert found == [Anomaly("admin", "rns-fw1: counter of zone admin is missing")]
    cur2 = Sample(
        2.0, {"rns-fw1": {"servers: reconnect servers #2": 1, "admin: reconnect admin #1": 9}}
    )
    assert evaluate(cur, cur2, WATCH, max_new_per_s=1.0, max_uplink_pps=None) == []


def test_uplink_rate() -> None:
    ok = evaluate(
        sample(0.0, 0, 0, 100), sample(2.0, 0, 0, 300), WATCH, max_new_per_s=1, max_uplink_pps=100
    )
    assert ok == []
    hot = evaluate(
        sample(0.0, 0, 0, 100), sample(2.0, 0, 0, 302), WATCH, max_new_per_s=1, max_uplink_pps=100
    )
    assert [a.zone for a in hot] == [None]
    assert "101 packets/s" in hot[0].what


NFT = """table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 counter packets 12 bytes 720 accept
  }
}
table inet cordon {
  chain forward {
    iifname "wan0" counter packets 4 bytes 240 drop comment "cut-wan #ab"
  }
}
"""


def test_baseline_ignores_isolation_and_counters_but_not_other_changes() -> None:
    plain = NFT.split("table inet cordon", maxsplit=1)[0]
    plain = plain.replace("packets 12 bytes 720", "packets 0 bytes 0")
    digest = baseline.digest("linux_nftables", plain)
    assert baseline.digest("linux_nftables", NFT) == digest
    tampered = NFT + "table inet intruder {\n}\n"
    assert baseline.digest("linux_nftables", tampered) != digest
    diff = baseline.differences("linux_nftables", plain, tampered)
    assert "+ table inet intruder {" in diff


def test_ios_baseline_ignores_shutdowns_and_the_size_line() -> None:
    head = "Building configuration...\nCurrent configuration : {} bytes\n"
    base = head.format(812) + "interface gi1\n description x\n"
    now = head.format(830) + "interface gi1\n description x\n shutdown\n"
    assert baseline.digest("cisco_ios", base) == baseline.digest("cisco_ios", now)
    changed = now.replace("description x", "description y")
    assert baseline.digest("cisco_ios", base) != baseline.digest("cisco_ios", changed)
