"""juniper_srx without a device: the renderer (stateful: no reply policy; count rules as their
overlaps), the expansion over the device's zones (refusals: an interface in no zone, a shared
zone), the parsers (names, deletes, order, hit counts from the fixture), the driver's line check
(injection), and the twin's own reading (insert, commit check, the stateful nft chains)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.network.state import DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.juniper_junos import srx_parse, srx_render, twin_security
from agent.platforms.juniper_junos.srx_driver import srx_kind_of

FIXTURES = Path(srx_render.__file__).with_name("fixtures")
SOINS, ADMIN, WAN = "ge-0/0/2.20", "ge-0/0/2.30", "ge-0/0/1"
SCOPE, SRV = "198.18.103.10", "198.18.104.10"
KEEP = NftRule("accept", SOINS, ADMIN, SCOPE, SRV, None, 2575, "keep")
REPLY = NftRule("accept", ADMIN, SOINS, SRV, SCOPE, 2575, None, "keep")
CUT_IN = NftRule("drop", iif=ADMIN, tag="cut")
CUT_OUT = NftRule("drop", oif=ADMIN, tag="cut")
STATE = DeviceState(rules=frozenset({KEEP, REPLY, CUT_IN, CUT_OUT}))
ZONES = {"ge-0/0/1.0": "wan", "ge-0/0/2.20": "soins", "ge-0/0/2.30": "admin"}


def test_registered_as_its_own_platform_with_a_whole_config_dead_man() -> None:
    spec = registry.platform("juniper_srx")
    assert spec.rules is not None and spec.rules.method == "junos-policy"
    assert spec.reverts_config and registry.platform("juniper_junos").reverts_config


def test_reply_accepts_render_to_nothing_and_drops_come_after_accepts() -> None:
    lines = srx_render.script(STATE).splitlines()
    policies = [ln for ln in lines if ln.startswith("policy ")]
    assert len(policies) == 3  # keep, cut in, cut out: no policy for the reply half
    assert policies[0].startswith(f"policy {srx_render.counted_as(KEEP)} from {SOINS} to {ADMIN}")
    assert policies[0].endswith("then permit") and all(p.endswith("deny") for p in policies[1:])
    assert "application CORDON-tcp-2575 tcp 2575" in lines
    assert srx_render.comments(STATE) == {srx_render.shown(ln) for ln in lines}


def test_a_count_rule_becomes_the_policies_of_what_it_overlaps() -> None:
    count = NftRule("count", iif=SOINS, oif=WAN, tag="c")
    accept = NftRule("accept", iif=SOINS, oif=WAN, tag="c")
    pols = srx_render.policies(DeviceState(rules=frozenset({count, accept})))
    key = srx_render.counted_as(count)
    assert [p.name for p in pols] == [
        f"{key}-{srx_render.rule_id(accept)}",
        srx_render.counted_as(accept),
    ]
    assert all(p.action == "permit" for p in pols)
    assert srx_render.count_key(pols[0].name) == key


def test_expand_writes_each_zone_pair_and_inserts_before_the_sites_first() -> None:
    out = srx_render.expand(
        srx_render.script(STATE).splitlines(), ZONES, {("soins", "admin"): "site-permit"}
    )
    keep = srx_render.counted_as(KEEP)
    head = f"set security policies from-zone soins to-zone admin policy {keep}"
    assert f"{head} match application CORDON-tcp-2575" in out and f"{head} then permit" in out
    cut_in = srx_render.counted_as(CUT_IN)
    pairs = {ln.split()[4] + ">" + ln.split()[6] for ln in out if f"policy {cut_in} " in ln}
    assert pairs == {"admin>wan", "admin>soins", "admin>admin"}  # `any` is every zone
    inserts = [ln for ln in out if ln.startswith("insert ")]
    assert inserts[0] == (
        f"insert security policies from-zone soins to-zone admin policy {keep} "
        "before policy site-permit"
    )
    assert len(inserts) == 2  # keep, then the cut into admin, in that order


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        ({"ge-0/0/2.20": "soins", "ge-0/0/1.0": "wan"}, "ge-0/0/2.30 is in no security zone"),
        ({**ZONES, "ge-0/0/3.0": "admin"}, "security zone admin holds ge-0/0/2.30 and ge-0/0/3.0"),
    ],
)
def test_expand_refuses_what_zones_cannot_say(zones: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        srx_render.expand(srx_render.script(STATE).splitlines(), zones, {})


@pytest.mark.parametrize(
    "line",
    [
        "policy CORDON-r12345678 from any to any match any any any then permit; delete",
        "policy CORDON-r12345678 from any to any match site-addr any any then deny",
        "address CORDON-h-198.18.1.10 198.18.1.11/32",
        "set security policies default-policy permit-all",
        "application CORDON-tcp-22 tcp 23",
        "policy CORDON-r12345678 from any to any match any any any then permit\nset system",
    ],
)
def test_the_driver_refuses_lines_it_does_not_send(line: str) -> None:
    with pytest.raises(ValueError):
        srx_kind_of([line])


def test_kinds() -> None:
    assert srx_kind_of(srx_render.script(STATE).splitlines()) == "policies"
    assert srx_kind_of([]) == "policies"  # the empty set removes every CORDON- object
    assert srx_kind_of(["set interfaces ge-0/0/0 disable"]) == "disable"


CONFIG = """\
## Last commit: 2026-12-07 07:00:00 UTC by root
set security zones security-zone soins interfaces ge-0/0/2.20
set security zones security-zone admin interfaces ge-0/0/2.30
set security address-book global address CORDON-h-198.18.103.10 198.18.103.10/32
set applications application CORDON-tcp-2575 protocol tcp
set applications application CORDON-tcp-2575 destination-port 2575
set security policies from-zone soins to-zone admin policy CORDON-r11111111 match source-address CORDON-h-198.18.103.10
set security policies from-zone soins to-zone admin policy CORDON-r11111111 match destination-address any
set security policies from-zone soins to-zone admin policy CORDON-r11111111 match application CORDON-tcp-2575
set security policies from-zone soins to-zone admin policy CORDON-r11111111 then permit
set security policies from-zone soins to-zone admin policy site-permit match source-address any
set security policies from-zone soins to-zone admin policy site-permit then permit
set security policies from-zone admin to-zone soins policy site-permit then permit
set security policies from-zone admin to-zone soins policy CORDON-r22222222 then deny
"""  # noqa: E501


def test_parse_names_order_deletes_and_baseline() -> None:
    ours = srx_parse.ours(CONFIG)
    assert "site-permit" not in ours
    assert srx_parse.names_listed(ours) == [
        "address CORDON-h-198.18.103.10 198.18.103.10/32",
        "application CORDON-tcp-2575 tcp 2575",
        "policy CORDON-r11111111 match CORDON-h-198.18.103.10 any CORDON-tcp-2575 then permit",
        "policy CORDON-r22222222 match ? ? ? then deny",  # incomplete: never a rendered name
    ]
    assert srx_parse.zones(CONFIG) == {"ge-0/0/2.20": "soins", "ge-0/0/2.30": "admin"}
    assert srx_parse.misplaced(CONFIG) == ["admin>soins"]
    assert srx_parse.first_site(CONFIG) == {
        ("soins", "admin"): "site-permit",
        ("admin", "soins"): "site-permit",
    }
    deletes = srx_parse.delete_lines(ours)
    assert deletes[0].startswith("delete security policies from-zone soins to-zone admin")
    assert deletes[-1] == "delete applications application CORDON-tcp-2575"
    assert all("CORDON" not in ln for ln in srx_parse.config_lines(CONFIG))


def test_hit_counts_from_the_documented_reply() -> None:
    reply = (FIXTURES / "get-security-policies-hit-count.xml").read_text()
    assert srx_parse.hit_counts(reply) == {"CORDON-r1b467349": 7, "CORDON-r94c4c238": 3}


# -- the twin's own reading --------------------------------------------------------------------


def _twin_config() -> list[str]:
    return [ln.removeprefix("set ") for ln in CONFIG.splitlines() if ln.startswith("set ")]


def test_twin_insert_moves_a_policy_before_the_sites() -> None:
    cfg = _twin_config()
    moved, err = twin_security.insert(
        cfg,
        "security policies from-zone admin to-zone soins policy CORDON-r22222222 "
        "before policy site-permit",
    )
    assert err is None
    names = [s.split()[7] for s in moved if s.startswith("security policies from-zone admin")]
    assert names == ["CORDON-r22222222", "site-permit"]
    _, err = twin_security.insert(
        cfg, "security policies from-zone admin to-zone soins policy nope before policy site-permit"
    )
    assert err == "statement not found"


def test_twin_commit_check_refuses_incomplete_and_undefined() -> None:
    errors = twin_security.check(
        [*_twin_config(), "security policies from-zone admin to-zone dmz policy x then deny"]
    )
    messages = [m for _p, m, _e in errors]
    assert "Security zone dmz is not defined" in messages
    assert "missing mandatory statement: 'source-address'" in messages
    ok = twin_security.check(
        [s for s in _twin_config() if "site-permit" not in s and "r22222222" not in s]
    )
    assert ok == []


def test_twin_flow_is_stateful_and_ordered() -> None:
    cfg = [s for s in _twin_config() if "r22222222" not in s and "site-permit" not in s]
    sec = twin_security.read(cfg)
    fwd, chains = twin_security.nft_chains(sec, lambda ifl: ifl.replace("/", "-"))
    assert fwd[0] == "ct state established,related accept" and fwd[-1] == "drop"
    body = "\n".join(chains)
    assert "ip saddr { 198.18.103.10/32 }" in body and "tcp dport 2575" in body
    assert 'comment "pol:soins>admin>CORDON-r11111111"' in body
    assert body.count("    drop") == 4  # every pair (intra-zone too) ends in deny-all
    assert twin_security.nft_chains(twin_security.read([]), str) == ([], [])  # an EX: none
