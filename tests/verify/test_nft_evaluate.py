"""The nftables evaluator on rulesets recorded with `nft -j list ruleset` (fixtures/nft/*.json,
each loaded from the .nft beside it in a throwaway network namespace): Cordon's table beside a
site's own table, jumps and returns, goto, reject, sets and ranges, ct state, policies, and the
expressions it does not evaluate answered UNKNOWN (naming them), never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.platforms.capabilities import FlowDecision, FlowQuery, Verdict
from agent.platforms.linux_nftables.evaluate import decide, load

FIXTURES = Path(__file__).with_name("fixtures") / "nft"


def ruleset(name: str) -> dict:  # type: ignore[type-arg]
    return load((FIXTURES / f"{name}.json").read_text())


def ask(name: str, q: FlowQuery) -> FlowDecision:
    return decide(ruleset(name), q)


def req(in_if: str, out_if: str, src: str, dst: str, dport: int) -> FlowQuery:
    return FlowQuery(in_if, out_if, src, dst, None, dport)


def rep(in_if: str, out_if: str, src: str, dst: str, sport: int) -> FlowQuery:
    return FlowQuery(in_if, out_if, src, dst, sport, None, reply=True)


# -- Cordon's table beside the site's ------------------------------------------------------------


def test_cordons_accept_then_its_cut_and_the_stateful_reply() -> None:
    there = ask("beside", req("lan0", "wan0", "198.18.1.20", "198.18.2.10", 443))
    back = ask("beside", rep("wan0", "lan0", "198.18.2.10", "198.18.1.20", 443))
    assert there.verdict is Verdict.ACCEPT
    assert back.verdict is Verdict.ACCEPT
    cut = ask("beside", req("lan0", "wan0", "198.18.1.20", "198.18.2.11", 443))
    assert cut.verdict is Verdict.DROP
    assert "inet cordon forward" in cut.why


def test_a_reply_without_established_state_is_cut() -> None:
    """The reply accept needs `ct state established`: a new connection from the server side
    (a SYN, not a bare ACK) matches neither reply rule and reaches the cut."""
    q = FlowQuery("wan0", "lan0", "198.18.2.10", "198.18.1.20", 443, 5555)
    assert ask("beside", q).verdict is Verdict.DROP


def test_jump_return_and_reject() -> None:
    # 198.18.3.0/28 port 22 jumps to sub_a: 198.18.1.5 returns (then Cordon's table: no rule
    # for lan0 -> lan1, policy accept), anyone else is rejected (a drop)
    ok = ask("beside", req("lan0", "lan1", "198.18.1.5", "198.18.3.2", 22))
    assert ok.verdict is Verdict.ACCEPT
    no = ask("beside", req("lan0", "lan1", "198.18.1.6", "198.18.3.2", 85))
    assert no.verdict is Verdict.DROP
    assert "site sub_a" in no.why
    # port 91 is outside the range: no jump
    assert ask("beside", req("lan0", "lan1", "198.18.1.6", "198.18.3.2", 91)).verdict is (
        Verdict.ACCEPT
    )


def test_goto_with_a_wildcard_interface() -> None:
    no = ask("beside", req("dmz3", "lan1", "198.18.9.1", "198.18.4.1", 25))
    assert no.verdict is Verdict.DROP
    assert "site sub_b" in no.why


def test_a_limit_is_unknown_not_a_guess() -> None:
    d = ask("beside", req("dmz3", "lan1", "198.18.9.1", "198.18.4.1", 8080))
    assert d.verdict is Verdict.UNKNOWN
    assert "limit" in d.why


def test_a_static_named_set_is_read() -> None:
    d = ask("beside", req("lan0", "lan1", "198.18.7.7", "198.18.4.1", 80))
    assert d.verdict is Verdict.DROP
    assert "handle" in d.why


def test_a_mark_is_unknown_and_a_drop_still_decides() -> None:
    """`meta mark` is not evaluated: the site's chain cannot be decided for a packet that gets
    that far (UNKNOWN, naming it); when Cordon's table drops the packet, it is dropped anyway."""
    d = ask("beside", req("lan0", "lan1", "198.18.1.20", "198.18.4.1", 80))
    assert d.verdict is Verdict.UNKNOWN
    assert "meta mark" in d.why
    cut = ask("beside", req("lan0", "wan0", "198.18.1.20", "198.18.4.1", 80))
    assert cut.verdict is Verdict.DROP


def test_the_ephemeral_port_is_unknown_where_a_rule_needs_it() -> None:
    """A reply's destination port is the client's ephemeral one: a rule that would match on it
    (and whose other matches hold) cannot be decided."""
    rules = load(
        '{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "f", "hook": '
        '"forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "t", '
        '"chain": "f", "handle": 2, "expr": [{"match": {"op": "==", "left": {"payload": '
        '{"protocol": "tcp", "field": "dport"}}, "right": {"range": [1024, 65535]}}}, '
        '{"drop": null}]}}]}'
    )
    d = decide(rules, rep("a", "b", "198.18.1.1", "198.18.1.2", 443))
    assert d.verdict is Verdict.UNKNOWN
    assert "ephemeral" in d.why


# -- a default-deny chain ------------------------------------------------------------------------


def test_policy_drop_and_what_it_lets_through() -> None:
    assert ask("policy_drop", req("lan0", "srv0", "198.18.1.2", "198.18.5.9", 1500)).verdict is (
        Verdict.ACCEPT
    )
    assert ask("policy_drop", rep("srv0", "lan0", "198.18.5.9", "198.18.1.2", 1500)).verdict is (
        Verdict.ACCEPT
    )
    off = ask("policy_drop", req("lan0", "srv0", "198.18.1.2", "198.18.5.9", 2500))
    assert off.verdict is Verdict.DROP
    assert "policy drop" in off.why
    # `!=` then `continue`: changes nothing, the next rule (port < 100) accepts
    assert ask("policy_drop", req("lan0", "srv0", "198.18.1.2", "198.18.5.9", 80)).verdict is (
        Verdict.ACCEPT
    )


def test_no_forward_chain_accepts() -> None:
    d = decide(load('{"nftables": []}'), req("a", "b", "198.18.1.1", "198.18.1.2", 80))
    assert d.verdict is Verdict.ACCEPT


@pytest.mark.parametrize("text", ["", "[]", "not json", '{"nftables": 3}'])
def test_not_nft_output_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="nft JSON"):
        load(text)
