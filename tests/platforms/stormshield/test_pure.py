"""The stormshield renderer, parser and wire reader without a device: what the plan's rules
become (reply accepts: none; count: a log rule that counts), the read-back of what was
rendered, values refused before they reach serverd, and the documented answer shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.errors import DeviceError, PlanError
from agent.inventory import load
from agent.network.state import DeviceState, NftRule
from agent.platforms.stormshield import parse, render, serverd
from agent.platforms.stormshield.driver import StormshieldDriver
from agent.platforms.stormshield.render import INSERT

FIX = Path(__file__).resolve().parents[3] / "agent" / "platforms" / "stormshield" / "fixtures"
ARMOR = Path(__file__).parent / "data" / "ght-armor.yaml"

KEEP = NftRule("accept", "lan1.110", "wan0", "198.18.93.11", "198.18.92.20", None, 443, "keep")
REPLY = NftRule("accept", "wan0", "lan1.110", "198.18.92.20", "198.18.93.11", 443, None, "keep")
CUT_IN = NftRule("drop", iif="wan0", tag="L2 wan")
CUT_OUT = NftRule("drop", oif="wan0", tag="L2 wan")
COUNT = NftRule("count", "lan1.120", "wan0", tag="soak")
STATE = DeviceState(rules=frozenset([KEEP, REPLY, CUT_IN, CUT_OUT, COUNT]))


def rule_lines(state: DeviceState) -> list[str]:
    return [ln for ln in render.script(state).splitlines() if ln.startswith(INSERT)]


def test_rules_become_sns_rules_in_evaluation_order() -> None:
    """Accepts, then the counter, then the cuts; the reply accept is the state table's job."""
    lines = rule_lines(STATE)
    assert len(lines) == 4
    assert "action=pass" in lines[0] and "dstport=cordon_tcp_443" in lines[0]
    assert "action=log count=on" in lines[1]
    assert all("action=block" in ln for ln in lines[2:])
    assert not any("srcport=" in ln for ln in lines)  # no rule from the service's port
    assert render.comments(STATE) == render.comments_in(render.script(STATE))
    assert render.comment(REPLY) not in render.comments(STATE)


def test_empty_state_is_a_script_that_removes_every_cordon_rule() -> None:
    text = render.script(DeviceState())
    assert text.splitlines() == [render.HEADER]
    assert render.comments(DeviceState()) == frozenset()


@pytest.mark.parametrize(
    "tag", ['a"b', "a\nb", "x=y", "back\\slash", "\u00e9t\u00e9", "trailing\n"]
)
def test_unsafe_comments_are_refused_before_sending(tag: str) -> None:
    with pytest.raises(PlanError, match="serverd"):
        render.script(DeviceState(rules=frozenset([NftRule("drop", iif="wan0", tag=tag)])))


@pytest.mark.parametrize("name", ["wan 0", 'wan"0', "wan0\n", "-x", "a/b"])
def test_unsafe_interface_names_are_refused(name: str) -> None:
    with pytest.raises(PlanError):
        render.script(DeviceState(rules=frozenset([NftRule("drop", iif=name, tag="t")])))


def test_read_back_of_rendered_rules_is_the_plan() -> None:
    """Each rendered line read back as a rule is the plan's rule, not an edited one."""
    for rule in (KEEP, CUT_IN, CUT_OUT, COUNT):
        sns = parse.SnsRule(1, 1, tuple(render.tokens(rule)))
        assert parse.rule_of(sns) == rule
        assert not parse.edited(sns)
    changed = dict(render.tokens(CUT_IN)) | {"action": "pass"}
    assert parse.edited(parse.SnsRule(1, 1, tuple(changed.items())))


def test_documented_section_line_answer_reads_as_the_client_prints_it() -> None:
    r = serverd.reply((FIX / "command_section_line.xml").read_bytes())
    assert r.ok and r.status == '100 code=00a00100 msg="Ok"'
    assert r.text == (FIX / "command_section_line.txt").read_text().rstrip("\n")
    assert r.lines["Result"][1]["name"] == "ntp2.stormshieldcs.eu"


def test_documented_explicit_policy_parses() -> None:
    """The real appliance's EXPLICIT answer: three rules (separators skipped), none Cordon's."""
    r = serverd.reply((FIX / "explicit.xml").read_bytes())
    rules = parse.explicit(r.element)
    assert [(x.position, x.index, x.get("action")) for x in rules] == [
        (2, 1, "pass"),
        (3, 2, "pass"),
        (5, 3, "block"),
    ]
    assert rules[0].get("dstport") == "firewall_srv,https"
    assert not any(x.ours for x in rules) and parse.ours_text(rules) == ""


def test_error_and_session_shapes() -> None:
    err = serverd.reply((FIX / "error_format.xml").read_bytes())
    assert not err.ok and err.status == '200 code=00100800 msg="Error in format"'
    assert serverd.reply((FIX / "nws_invalid_session.xml").read_bytes()).nws == 203
    assert serverd.auth_result((FIX / "auth_success.xml").read_bytes())[0] == "AUTH_SUCCESS"
    assert serverd.auth_result((FIX / "auth_failed.xml").read_bytes())[0] == "AUTH_FAILED"
    code, _, sid = serverd.session((FIX / "login.xml").read_bytes())
    assert code == 100 and sid
    assert parse.active_slot(serverd.reply((FIX / "slot_list.xml").read_bytes())) == "10"
    announce = serverd.reply((FIX / "backup_announce.xml").read_bytes())
    assert serverd.download_announce(announce) == ("923B2C86", 952)
    with pytest.raises(serverd.WireError):
        serverd.reply(b'<!DOCTYPE x [<!ENTITY a "b">]><nws code="100"/>')


def test_download_crc_is_the_clients() -> None:
    """CRC-32 without the final inversion, as the client's crc.py computes it."""

    def client_crc(data: bytes) -> str:
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
        return f"{crc:X}"

    for data in (b"", b"cordon", bytes(range(256)) * 3):
        assert serverd.sns_crc(data) == client_crc(data)


def test_driver_refuses_a_foreign_line_before_connecting() -> None:
    """Only object lines and rules commented 'cordon ...' are ever sent."""
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    for bad in (
        "CONFIG FILTER RULE REMOVE index=5 type=filter position=all",
        f'{INSERT} type=filter state=on action=pass srctarget=any dsttarget=any comment="x"',
        "SYSTEM REBOOT",
    ):
        with pytest.raises(DeviceError, match="refused before sending"):
            drv.apply(ChangeSet((bad,)))
    assert not drv.is_open()
