"""The fortigate renderer and parser, pure: every packet gets the verdict the nft semantics of the
same state give it (requests and replies, by sessions), scripts parse back to the same objects,
anything that could inject into FortiOS is refused before sending, the fixtures' shapes."""

from __future__ import annotations

import ipaddress
import itertools
import json
from pathlib import Path

import pytest

from agent.network.state import DeviceState, NftRule
from agent.platforms.fortigate import parse, render

FIX = Path(render.__file__).with_name("fixtures")

FLOW = [
    NftRule("accept", "lan0.20", "lan0.30", "198.18.92.10", "198.18.93.10", None, 2575, "keep"),
    NftRule("accept", "lan0.30", "lan0.20", "198.18.93.10", "198.18.92.10", 2575, None, "keep"),
]
STATES = {
    "cut": DeviceState(rules=frozenset({NftRule("drop", iif="wan1"), NftRule("drop", oif="wan1")})),
    "block": DeviceState(
        rules=frozenset(
            {NftRule("drop", "lan0.20", "lan0.30"), NftRule("drop", "lan0.30", "lan0.20"), *FLOW}
        )
    ),
    "reconnect": DeviceState(
        rules=frozenset(
            {
                NftRule("drop", iif="wan1"),
                NftRule("drop", oif="wan1"),
                NftRule("count", iif="lan0.30", oif="wan1", tag="r: reconnect admin"),
                NftRule("accept", iif="lan0.30", oif="wan1", tag="r: reconnect admin"),
                NftRule("accept", iif="wan1", oif="lan0.30", tag="r: reconnect admin"),
            }
        )
    ),
    # a zone segmentation: every pair of zones cut both ways, a kept flow across, the WAN cut
    "segment": DeviceState(
        rules=frozenset(
            {
                *(
                    NftRule("drop", a, b, tag="segment")
                    for a, b in itertools.permutations(["lan0.20", "lan0.30", "lan0.40"], 2)
                    if {a, b} != {"lan0.20", "lan0.30"}
                ),
                NftRule("drop", iif="wan1", tag="cut-wan"),
                NftRule("drop", oif="wan1", tag="cut-wan"),
                NftRule("accept", "lan0.20", "lan0.40", "198.18.92.10", "198.18.94.10", None, 2575),
                NftRule("accept", "lan0.40", "lan0.20", "198.18.94.10", "198.18.92.10", 2575, None),
            }
        )
    ),
}


def _in(name: str, value: str, builtin: str) -> bool:
    """FortiOS: a field matches when it is the built-in 'everything' or names the value."""
    names = render.members(value)
    return names == [builtin] or name in names


def _addr_in(ip: str, value: str, addresses: dict[str, str]) -> bool:
    names = render.members(value)
    return names == ["all"] or any(
        ipaddress.ip_address(ip) in ipaddress.ip_network(addresses[n]) for n in names
    )


def fortios_opens(lines: list[str], iif: str, oif: str, src: str, dst: str, port: int) -> bool:
    """A FortiOS session opens when the first matching policy accepts (the site's accept-all
    after Cordon's); its replies then pass by the session table."""
    objs = parse.parse_script(lines)
    for p in objs.policies:
        # FortiOS: a packet matches a policy when it matches one name of each of its lists
        ok = (
            _in(iif, p.srcintf, "any")
            and _in(oif, p.dstintf, "any")
            and _addr_in(src, p.srcaddr, objs.addresses)
            and _addr_in(dst, p.dstaddr, objs.addresses)
            and (p.service == "ALL" or port in [objs.services[n] for n in p.service.split(",")])
        )
        if ok:
            return p.action == "accept"
    return True


@pytest.mark.parametrize("name", sorted(STATES))
def test_same_connections_as_nftables(name: str) -> None:
    """Every connection (any interfaces, hosts, port) opens on the FortiGate exactly when the nft
    semantics let both its request and its reply through."""
    state = STATES[name]
    lines = render.script(state).splitlines()
    ifs = ["wan1", "lan0.20", "lan0.30", "lan0.40"]
    hosts = ["198.18.92.10", "198.18.93.10", "198.18.94.10", "198.18.90.10"]
    for iif, oif in itertools.permutations(ifs, 2):
        for src, dst in itertools.permutations(hosts, 2):
            for port in (2575, 8080):
                nft = state.forward(iif, oif, src, dst, None, port) == "accept" and (
                    state.forward(oif, iif, dst, src, port, None, reply=True) == "accept"
                )
                assert fortios_opens(lines, iif, oif, src, dst, port) == nft, (
                    iif,
                    oif,
                    src,
                    dst,
                    port,
                )


def test_neighbouring_denies_merge_into_list_policies() -> None:
    """A segmentation's denies become a few policies with interface lists (fewer REST writes);
    the kept flow's accept stays one policy of its own, before them; the script parses back."""
    state = STATES["segment"]
    pols = render.policies(state)
    assert len(pols) < len(render._policies(state)) == 7
    assert pols[0].action == "accept" and pols[0].name == render.PREFIX + render.rule_id(
        next(r for r in state.rules if r.verdict == "accept" and not r.reply)
    )
    merged = [p for p in pols if "," in p.srcintf + p.dstintf]
    assert merged and all(p.action == "deny" and p.name.startswith("cordon-g") for p in merged)
    assert all(render.count_key(p.name) is None for p in merged)
    assert parse.parse_script(render.script(state).splitlines()).lines() == render.objects(state)


def test_merge_keeps_count_rules_and_accepts_apart() -> None:
    """The policies of a count rule (its counter) and accepts (read back per rule) never merge."""
    pols = render.policies(STATES["reconnect"])
    assert [p.name for p in pols] == [p.name for p in render._policies(STATES["reconnect"])]
    a = render.Policy("cordon-00000001", "accept", "a", "x", "all", "all", "ALL", "t #00000001")
    b = render.Policy("cordon-00000002", "accept", "b", "x", "all", "all", "ALL", "t #00000002")
    assert render.merge([a, b]) == [a, b]
    d1 = render.Policy("cordon-00000003", "deny", "a", "x", "all", "all", "ALL", "t #00000003")
    d2 = render.Policy("cordon-00000004", "deny", "b", "y", "all", "all", "ALL", "t #00000004")
    assert render.merge([d1, d2]) == [d1, d2]  # two fields differ: their union is no product
    d3 = render.Policy("cordon-00000005", "deny", "any", "x", "all", "all", "ALL", "t #00000005")
    assert render.merge([d1, d3]) == [d1, d3]  # 'any' stands alone in a list


def test_script_parses_back_and_counts_by_the_count_rule() -> None:
    state = STATES["reconnect"]
    text = render.script(state)
    assert parse.parse_script(text.splitlines()).lines() == render.objects(state)
    assert render.comments_in(text) == render.comments(state)
    count = next(r for r in state.rules if r.verdict == "count")
    keys = {render.count_key(p.name) for p in render.policies(state)}
    assert render.counted_as(count) in keys
    assert render.script(DeviceState()).splitlines() == [render.HEADER]


@pytest.mark.parametrize(
    "line",
    [
        "policy 1 cordon-x action=accept srcintf=lan0 dstintf=any srcaddr=all dstaddr=all "
        "service=ALL comments='a\"; end'",
        "policy 1 site-policy action=accept srcintf=any dstintf=any srcaddr=all dstaddr=all "
        "service=ALL comments=x",
        "policy 1 cordon-x action=accept srcintf='lan0 next' dstintf=any srcaddr=all "
        "dstaddr=all service=ALL comments=x",
        "policy 1 cordon-x action=deny srcintf=lan1,lan0 dstintf=any srcaddr=all "
        "dstaddr=all service=ALL comments=x",  # a list out of order: never rendered so
        "policy 1 cordon-x action=deny srcintf=any,lan0 dstintf=any srcaddr=all "
        "dstaddr=all service=ALL comments=x",  # 'any' stands alone
        "policy 1 cordon-x action=deny srcintf=lan0,,lan1 dstintf=any srcaddr=all "
        "dstaddr=all service=ALL comments=x",
        "policy 1 cordon-x action=deny srcintf=lan0 dstintf=any srcaddr=all,cordon-h-1 "
        "dstaddr=all service=ALL comments=x",
        "address cordon-h-1 subnet=10.0.0.1/8",
        "execute factoryreset",
    ],
)
def test_script_refuses_what_could_inject(line: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_script([line])


def test_interface_and_comment_checks() -> None:
    with pytest.raises(ValueError):
        render.check_ifname('port1"\nend')
    with pytest.raises(ValueError):
        render.shut_lines(["a" * 16], down=True)
    assert render.safe_comment('x"\n\\y') == "x___y"


def test_fixture_shapes() -> None:
    """The error fixtures the twin answers with carry FortiOS's envelope: status, http_status,
    and a negative error code on refused writes."""
    for name, status, code in (
        ("error_404", 404, None),
        ("error_424", 424, -3),
        ("error_500", 500, -651),
    ):
        env = parse.envelope(
            json.dumps(json.loads((FIX / f"{name}.json").read_text())).encode(), status
        )
        assert env["status"] == "error" and env["http_status"] == status
        assert env.get("error") == code
    ok = json.loads((FIX / "envelope_cmdb_post.json").read_text())
    assert ok["status"] == "success" and ok["mkey"]


def test_config_lines_drop_cordon_blocks() -> None:
    text = (
        '#config-version=x\nconfig firewall policy\n    edit 3\n        set name "cordon-1"\n'
        '    next\n    edit 1000\n        set name "site"\n    next\nend\n'
    )
    assert parse.config_lines(text) == [
        "config firewall policy",
        "    edit 1000",
        '        set name "site"',
        "    next",
        "end",
    ]


def test_cut_interface_also_denies_traffic_to_the_firewall_itself() -> None:
    """The nft renderer's input chain (drops with an incoming interface and no outgoing one)
    becomes Cordon's local-in policies, named in their comments; nothing for the output chain
    (FortiOS has no local-out policy)."""
    from agent.platforms.linux_nftables import render as nft  # noqa: PLC0415

    state = STATES["reconnect"]
    local = render.local_in(state)
    (_, nft_in), (_, nft_out) = nft.chains(state)[1:]
    assert [p.intf for p in local] == [r.iif for r in nft_in] == ["wan1"]
    assert nft_out  # nft also drops the firewall's own traffic out of wan1: FortiOS cannot
    assert all(p.action == "deny" and p.device_comments.startswith(p.name + " ") for p in local)
    lines = render.objects(state)
    assert [ln.split()[0] for ln in lines].count("local-in") == 1
    assert parse.parse_script(lines).local_in == local
    # the read-back of the device's REST objects gives the same lines, name from the comments
    objs = parse.parse_script(lines)
    rest_local = [{"policyid": 7, **parse.local_in_body(p)} for p in objs.local_in]
    rest_pols = [{"policyid": i, **parse.policy_body(p)} for i, p in enumerate(objs.policies)]
    addrs = [{"name": n, "subnet": parse.fortios_subnet(c)} for n, c in objs.addresses.items()]
    svcs = [{"name": n, "tcp-portrange": str(p)} for n, p in objs.services.items()]
    back, flags = parse.ours_from_rest(addrs, svcs, rest_pols, rest_local)
    assert back.lines(flags) == lines
    # a site local-in policy ahead of Cordon's shows in the read-back (it must come first)
    site = {"policyid": 1, "intf": "any", "comments": "site rule", "action": "accept"}
    back, flags = parse.ours_from_rest(addrs, svcs, rest_pols, [site, *rest_local])
    assert set(back.lines(flags)) != set(lines)


@pytest.mark.parametrize(
    "line",
    [
        "local-in 1 cordon-x action=accept intf=wan1 srcaddr=all dstaddr=all service=ALL "
        "comments=x",
        "local-in 1 cordon-x action=deny intf=any srcaddr=all dstaddr=all service=ALL comments=x",
        "local-in 1 cordon-x action=deny intf='wan1\"' srcaddr=all dstaddr=all service=ALL "
        "comments=x",
        "local-in 2 cordon-x action=deny intf=wan1 srcaddr=all dstaddr=all service=ALL comments=x",
    ],
)
def test_local_in_lines_refuse_what_cordon_never_writes(line: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_script([line])
