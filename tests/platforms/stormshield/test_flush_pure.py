"""Which connection states a Stormshield cut flushes, without a device: only the block rules a
change adds, a named host or the connected subnets of the interfaces a rule names (every
interface for a side left `any`), never a must-survive end nor the device's own address, a subnet
larger than a /24 reported and not enumerated; the command takes one host address and nothing
else; the twin refuses what is not one host address as serverd's format error. Of those, only
the hosts holding states in the appliance's connection table are flushed; a table that cannot be
read or understood flushes every wanted host, and the change's output says so."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.errors import CommandRejected, DeviceError, DeviceTimeout
from agent.inventory import load
from agent.network.state import DeviceState, NftRule
from agent.platforms.stormshield import flush, parse, render, serverd, twin_api
from agent.platforms.stormshield.driver import StormshieldDriver
from agent.platforms.stormshield.twin_api import ERR_FORMAT, Device, Refused

FIX = Path(__file__).resolve().parents[3] / "agent" / "platforms" / "stormshield" / "fixtures"
ARMOR = Path(__file__).parent / "data" / "ght-armor.yaml"

IF = ipaddress.IPv4Interface
A = ipaddress.IPv4Address
INTERFACES: dict[str, ipaddress.IPv4Interface | None] = {
    "mgmt0": None,
    "out": IF("198.18.90.5/30"),
    "wan0": IF("198.18.91.1/29"),
    "lan1": None,
    "lan1.110": IF("198.18.93.62/26"),
    "lan1.120": IF("198.18.94.1/24"),
}
KEEP = NftRule("accept", "lan1.110", "wan0", "198.18.93.11", "198.18.92.20", None, 443, "keep")
SEGMENT = NftRule("drop", "lan1.120", "lan1.110", tag="segment")
CUT_WAN = NftRule("drop", oif="wan0", tag="cut-wan")
QUARANTINE = NftRule("drop", saddr="198.18.94.20", tag="quarantine")


def lines(*rules: NftRule) -> tuple[list[str], list[str]]:
    script = render.script(DeviceState(rules=frozenset(rules))).splitlines()
    return (
        [ln for ln in script if ln.startswith(render.INSERT)],
        [ln for ln in script if ln.startswith("CONFIG OBJECT ")],
    )


def test_a_two_sided_cut_flushes_both_connected_subnets_but_a_must_survive_end() -> None:
    wanted, objects = lines(KEEP, SEGMENT)
    plan = flush.plan(wanted, objects, frozenset(), INTERFACES)
    hosts = set(plan.hosts)
    soins = set(ipaddress.IPv4Network("198.18.93.0/26").hosts())
    admin = set(ipaddress.IPv4Network("198.18.94.0/24").hosts())
    assert hosts == (soins | admin) - {A("198.18.93.11"), A("198.18.93.62"), A("198.18.94.1")}
    assert plan.kept == (A("198.18.93.11"),)
    assert plan.skipped == ()
    assert list(plan.hosts) == sorted(plan.hosts)
    assert plan.commands()[0] == "MONITOR FLUSH STATE 198.18.93.1"


def test_a_one_sided_cut_stands_for_every_interface_with_a_subnet() -> None:
    wanted, objects = lines(CUT_WAN)
    hosts = set(flush.plan(wanted, objects, frozenset(), INTERFACES).hosts)
    assert A("198.18.94.20") in hosts and A("198.18.93.10") in hosts
    assert A("198.18.91.2") in hosts and A("198.18.90.6") in hosts  # the peers' ends
    assert not hosts & {i.ip for i in INTERFACES.values() if i is not None}


def test_a_cut_naming_a_host_flushes_that_host_only() -> None:
    wanted, objects = lines(QUARANTINE)
    assert flush.plan(wanted, objects, frozenset(), INTERFACES).hosts == (A("198.18.94.20"),)


def test_only_the_block_rules_a_change_adds_flush() -> None:
    """A re-run, a rollback (no block rule) and an opening flush nothing."""
    wanted, objects = lines(KEEP, SEGMENT)
    before = render.comments(DeviceState(rules=frozenset([SEGMENT])))
    assert flush.plan(wanted, objects, before, INTERFACES).hosts == ()
    wanted, objects = lines(KEEP)
    assert flush.plan(wanted, objects, frozenset(), INTERFACES).hosts == ()
    assert flush.plan([], [], before, INTERFACES).hosts == ()


def test_a_subnet_larger_than_a_slash_24_is_reported_not_enumerated() -> None:
    wide = dict(INTERFACES, **{"lan1.120": IF("10.20.0.1/16")})
    wanted, objects = lines(SEGMENT)
    plan = flush.plan(wanted, objects, frozenset(), wide)
    assert plan.skipped == ("10.20.0.0/16",)
    assert all(h in ipaddress.IPv4Network("198.18.93.0/26") for h in plan.hosts)
    assert "NOT flushed" in plan.summary() and "10.20.0.0/16" in plan.summary()


def test_a_rule_naming_an_object_the_change_does_not_define_is_refused() -> None:
    wanted, _ = lines(QUARANTINE)
    with pytest.raises(ValueError, match="not a host object"):
        flush.plan(wanted, [], frozenset(), INTERFACES)


@pytest.mark.parametrize(
    "bad", ["198.18.94.20; CONFIG FILTER ACTIVATE", "198.18.94.020", "any", "224.0.0.1", "0.0.0.0"]
)
def test_the_command_takes_one_host_address_only(bad: str) -> None:
    with pytest.raises(ValueError):
        flush.command(bad)


def twin() -> Device:
    return Device(name="t", interfaces={}, slots={}, active="05")


@pytest.mark.parametrize(
    "cmd",
    [
        "MONITOR FLUSH STATE",
        "MONITOR FLUSH STATE 198.18.94.20 198.18.94.21",
        "MONITOR FLUSH STATE 198.18.94.0/24",
        "MONITOR FLUSH STATE host-pc",
        "MONITOR FLUSH STATE 198.18.94.20 rtstate=SIDEWAYS",
        "MONITOR FLUSH STATE 198.18.94.20 all=1",
        'MONITOR FLUSH STATE "198.18.94.20 198.18.94.21"',
    ],
)
def test_the_twin_refuses_a_malformed_flush_as_serverd_does(cmd: str) -> None:
    with pytest.raises(Refused) as err:
        twin().run(cmd)
    assert err.value.part == ERR_FORMAT


# -- only the hosts holding states ---------------------------------------------------------------


def fixture(name: str) -> serverd.Reply:
    return serverd.reply((FIX / name).read_bytes())


def test_the_connection_table_names_the_ends_of_each_connection() -> None:
    r = fixture("monitor_connection.xml")
    assert r.format == "section_line"
    assert flush.holding(r.lines["Result"]) == {
        A("198.18.94.20"),
        A("198.18.92.20"),
        A("198.18.93.11"),
    }


def _row(src: str, dst: str) -> str:
    return (
        f'<line><key name="src" value="{src}"/><key name="dst" value="{dst}"/>'
        '<key name="state" value="data"/></line>'
    )


def test_every_row_of_the_table_counts_whatever_its_section_or_part() -> None:
    """Rows in two sections of one title, and in a second <serverd> part, all count: a row the
    parser dropped would be a host holding states left unflushed (review finding)."""
    body = (
        '<?xml version="1.0"?><nws code="100" msg="OK">'
        '<serverd ret="101" code="00a01000" msg="Begin"><data format="section_line">'
        f'<section title="Result">{_row("198.18.94.20", "198.18.92.20")}</section>'
        f'<section title="Result">{_row("198.18.94.21", "198.18.92.20")}</section>'
        "</data></serverd>"
        '<serverd ret="101" code="00a01000" msg="Begin"><data format="section_line">'
        f'<section title="Result">{_row("198.18.94.22", "198.18.92.20")}</section>'
        '</data></serverd><serverd ret="100" code="00a00100" msg="Ok"></serverd></nws>'
    ).encode()
    r = serverd.reply(body)
    assert r.format == "section_line"
    held = flush.holding([row for rows in r.lines.values() for row in rows])
    assert held == {A("198.18.94.20"), A("198.18.94.21"), A("198.18.94.22"), A("198.18.92.20")}


def test_a_table_with_a_part_in_another_format_is_not_understood() -> None:
    body = (
        '<?xml version="1.0"?><nws code="100" msg="OK">'
        '<serverd ret="101" code="00a01000" msg="Begin"><data format="section_line">'
        f'<section title="Result">{_row("198.18.94.20", "198.18.92.20")}</section>'
        '</data></serverd><serverd ret="101" code="00a01000" msg="Begin"><data format="list">'
        '<section title="Result"><line>198.18.94.23</line></section></data></serverd>'
        '<serverd ret="100" code="00a00100" msg="Ok"></serverd></nws>'
    ).encode()
    with pytest.raises(serverd.WireError):
        serverd.reply(body)


def test_only_the_wanted_hosts_holding_states_are_flushed_never_a_kept_end() -> None:
    """The admin PC holds a state: flushed; the central station holds one too but is a
    must-survive end, the gateway's own address too: neither; the EHR is not wanted."""
    wanted, objects = lines(KEEP, SEGMENT)
    whole = flush.plan(wanted, objects, frozenset(), INTERFACES)
    held = flush.holding(fixture("monitor_connection.xml").lines["Result"]) | {A("198.18.93.62")}
    narrowed = flush.narrow(whole, held)
    assert narrowed.hosts == (A("198.18.94.20"),)
    assert narrowed.commands() == ["MONITOR FLUSH STATE 198.18.94.20"]
    assert narrowed.kept == (A("198.18.93.11"),)
    assert f"1 host(s) (of {len(whole.hosts)} the cut wants flushed" in narrowed.summary()
    assert flush.narrow(whole, frozenset()).hosts == ()


@pytest.mark.parametrize(
    "rows",
    [
        None,
        [{"src": "pc-admin", "dst": "198.18.92.20"}],
        [{"src": "198.18.94.20"}],
        [{"src": "198.18.94.20", "dst": "198.18.92.20"}] * flush.MAXCOUNT,
    ],
    ids=["no-data", "a-name", "no-dst", "perhaps-cut-short"],
)
def test_an_answer_not_understood_is_refused(rows: list[dict[str, str]] | None) -> None:
    with pytest.raises(ValueError):
        flush.holding(rows)


def test_ipv6_connections_are_understood_and_flush_no_ipv4_host() -> None:
    assert flush.holding([{"src": "2001:db8::1", "dst": "2001:db8::2"}]) == frozenset()
    mapped = [{"src": "::ffff:198.18.94.20", "dst": "2001:db8::2"}]
    assert flush.holding(mapped) == {A("198.18.94.20")}


def test_an_unknown_table_flushes_every_wanted_host_and_says_so() -> None:
    wanted, objects = lines(SEGMENT)
    whole = flush.plan(wanted, objects, frozenset(), INTERFACES)
    out = flush.narrow(whole, "MONITOR CONNECTION answer not understood: row 1")
    assert out.hosts == whole.hosts and len(out.hosts) > 250
    assert "every host the cut wants flushed" in out.summary()
    assert "not understood: row 1" in out.summary()


# -- the driver: one read, then the flushes; the slow path when the read does not serve --------


OK = b'<?xml version="1.0"?>\n<nws code="100" msg="OK">' + twin_api.OK.encode() + b"</nws>"


def answer(body: bytes) -> Callable[..., serverd.Reply]:
    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        r = serverd.reply(body)
        if check and not r.ok:
            raise CommandRejected("cb-sns", operation, c, r.status)
        return r

    return cmd


def flushed(
    monkeypatch: pytest.MonkeyPatch, listing: Callable[..., serverd.Reply]
) -> tuple[list[str], str, int]:
    """The commands and output of the driver's flush after a cut of the admin zone from the
    care zone, the appliance answering `listing` to MONITOR CONNECTION and OK to each flush."""
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    sent_to_device: list[str] = []

    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        sent_to_device.append(c)
        if c.startswith("MONITOR CONNECTION"):
            return listing(c, operation, check=check)
        return answer(OK)(c, operation, check=check)

    wanted, objects = lines(KEEP, SEGMENT)
    comments = {flush.tokens(w)["comment"] for w in wanted}
    rules = [parse.SnsRule(n, n, (("comment", c),)) for n, c in enumerate(sorted(comments), 1)]
    monkeypatch.setattr(drv, "_cmd", cmd)
    monkeypatch.setattr(drv, "policy", lambda operation, clone=False, slot=None: rules)
    states = drv._flush_plan(wanted, objects, frozenset())
    sent: list[str] = []
    output = drv._flush(states, wanted, sent)
    assert sent_to_device[0].startswith("MONITOR CONNECTION")
    assert sent == sent_to_device[1:]
    return sent, output, len(states.hosts)


def test_the_driver_flushes_only_the_hosts_the_table_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent, output, wanted = flushed(
        monkeypatch, answer((FIX / "monitor_connection.xml").read_bytes())
    )
    assert sent == ["MONITOR FLUSH STATE 198.18.94.20"]
    assert f"for 1 host(s) (of {wanted} the cut wants flushed" in output


def refused(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
    raise CommandRejected("cb-sns", operation, c, '200 code=00100100 msg="Unknown command"')


def timed_out(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
    raise DeviceTimeout("cb-sns", operation, "no answer within 10 s")


BAD_ROW = (
    (FIX / "monitor_connection.xml")
    .read_bytes()
    .replace(b'value="198.18.94.20"', b'value="pc-admin"', 1)
)


@pytest.mark.parametrize(
    ("listing", "why"),
    [
        (refused, "Unknown command"),
        (timed_out, "no answer within"),
        (
            answer((FIX / "error_format.xml").read_bytes().replace(b'ret="200"', b'ret="100"')),
            "no section_line data",
        ),
        (answer(BAD_ROW), "not understood"),
    ],
    ids=["refused", "timeout", "no-data", "a-row-not-understood"],
)
def test_the_driver_flushes_every_wanted_host_when_the_table_does_not_serve(
    monkeypatch: pytest.MonkeyPatch, listing: Callable[..., serverd.Reply], why: str
) -> None:
    sent, output, wanted = flushed(monkeypatch, listing)
    assert len(sent) == wanted > 250
    assert "MONITOR FLUSH STATE 198.18.94.20" in sent
    assert "every host the cut wants flushed" in output and why in output


def test_a_cut_of_one_host_flushes_it_without_reading_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    sent_to_device: list[str] = []

    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        sent_to_device.append(c)
        return answer(OK)(c, operation, check=check)

    wanted, objects = lines(QUARANTINE)
    rules = [parse.SnsRule(1, 1, (("comment", flush.tokens(wanted[0])["comment"]),))]
    monkeypatch.setattr(drv, "_cmd", cmd)
    monkeypatch.setattr(drv, "policy", lambda operation, clone=False, slot=None: rules)
    sent: list[str] = []
    output = drv._flush(drv._flush_plan(wanted, objects, frozenset()), wanted, sent)
    assert sent_to_device == sent == ["MONITOR FLUSH STATE 198.18.94.20"]
    assert output == "connection states flushed for 1 host(s)"


CONNTRACK = """\
ipv4     2 tcp      6 431995 ESTABLISHED src=198.18.94.77 dst=198.18.92.20 sport=40112 \
dport=47204 src=198.18.92.20 dst=198.18.94.77 sport=47204 dport=40112 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 117 TIME_WAIT src=198.18.93.10 dst=198.18.93.11 sport=51000 dport=2575 \
src=198.18.93.11 dst=198.18.93.10 sport=2575 dport=51000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 29 src=198.18.94.20 dst=198.18.95.10 sport=5353 dport=53 [UNREPLIED] \
src=198.18.95.10 dst=198.18.94.20 sport=53 dport=5353 mark=0 zone=0 use=2
ipv6     10 tcp      6 60 SYN_SENT src=2001:db8::1 dst=2001:db8::2 sport=1 dport=2 [UNREPLIED] \
src=2001:db8::2 dst=2001:db8::1 sport=2 dport=1 mark=0 zone=0 use=2
"""


def test_the_twin_lists_its_conntrack_entries_as_the_driver_reads_them() -> None:
    """Each conntrack entry a row of its original direction, serverd's state for TCP; the
    answer a section_line table the driver understands."""
    rows = twin_api.rows_of(CONNTRACK)
    assert [(r["proto"], r["src"], r["dst"], r["dstport"], r["state"]) for r in rows] == [
        ("tcp", "198.18.94.77", "198.18.92.20", "47204", "data"),
        ("tcp", "198.18.93.10", "198.18.93.11", "2575", "closed"),
        ("udp", "198.18.94.20", "198.18.95.10", "53", "open"),
        ("tcp", "2001:db8::1", "2001:db8::2", "2", "c_syn"),
    ]
    part = twin_api._section_line("Result", rows) + "</serverd>" + twin_api.OK
    r = serverd.reply(f'<?xml version="1.0"?>\n<nws code="100" msg="OK">{part}</nws>'.encode())
    assert flush.holding(r.lines["Result"]) == {
        A("198.18.94.77"), A("198.18.92.20"), A("198.18.93.10"), A("198.18.93.11"),
        A("198.18.94.20"), A("198.18.95.10"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "cmd",
    [
        "MONITOR CONNECTION state=data",
        "MONITOR CONNECTION maxcount=ten",
        "MONITOR CONNECTION host=pc-admin",
        "MONITOR CONNECTION geo=fr",
    ],
)
def test_the_twin_refuses_a_listing_it_does_not_emulate(cmd: str) -> None:
    with pytest.raises(Refused) as err:
        twin().run(cmd)
    assert err.value.part == ERR_FORMAT


def test_a_change_reads_the_active_slot_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Round trips (#18): the slot is read once and named by every command of the change (the
    policy read, the edited clone, the rules removed), not once per read."""
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    sent: list[str] = []
    replies = {
        "CONFIG SLOT LIST": (FIX / "slot_list.xml").read_bytes(),
        "CONFIG FILTER EXPLICIT": (FIX / "explicit.xml").read_bytes(),
    }

    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        sent.append(c)
        body = next((b for k, b in replies.items() if c.startswith(k)), OK)
        return answer(body)(c, operation, check=check)

    monkeypatch.setattr(drv, "_cmd", cmd)
    monkeypatch.setattr(drv, "connect", lambda: None)
    drv.apply(render_normal())
    assert [c for c in sent if c.startswith("CONFIG SLOT LIST")] == ["CONFIG SLOT LIST type=filter"]
    slot = parse.active_slot(serverd.reply(replies["CONFIG SLOT LIST"]))
    explicit = [c for c in sent if c.startswith("CONFIG FILTER EXPLICIT")]
    assert len(explicit) == 2 and all(f"index={int(slot)} " in c for c in explicit)
    assert sent[-1] == "CONFIG FILTER ACTIVATE"


def render_normal() -> ChangeSet:
    """The script back to normal (none of Cordon's rules)."""
    return ChangeSet(tuple(render.script(DeviceState()).splitlines()), action="test")


def test_a_change_keeps_the_rules_already_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Round trips (#18): against the twin's serverd (no kernel), a step adding a rule after
    the rules of the step before removes and inserts only what differs from the top of the
    policy down, and the policy read back is the wanted one, in order."""
    dev = Device(
        name="t",
        interfaces={},
        slots={"05": {"name": "filter05", "lines": []}},
        active="05",
    )
    monkeypatch.setattr(Device, "load", lambda self: None)  # no kernel here
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    sent: list[str] = []

    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        sent.append(c)
        try:
            body = dev.run(c)
        except Refused as exc:
            raise CommandRejected("cb-sns", operation, c, str(exc)) from None
        return answer(
            b'<?xml version="1.0"?>\n<nws code="100" msg="OK">' + body.encode() + b"</nws>"
        )(c, operation, check=check)

    monkeypatch.setattr(drv, "_cmd", cmd)
    monkeypatch.setattr(drv, "connect", lambda: None)
    a = NftRule("accept", saddr="198.18.94.20", daddr="198.18.95.10", dport=443, tag="a")
    b = NftRule("accept", saddr="198.18.94.21", daddr="198.18.95.10", dport=443, tag="b")
    first = render.script(DeviceState(rules=frozenset({a}))).splitlines()
    second = render.script(DeviceState(rules=frozenset({a, b}))).splitlines()
    drv.apply(ChangeSet(tuple(first), action="test"))
    wanted = [ln for ln in second if ln.startswith(render.INSERT)]
    kept = [ln for ln in first if ln.startswith(render.INSERT)]
    assert wanted[: len(kept)] == kept  # the second step adds after the first's rule
    sent.clear()
    drv.apply(ChangeSet(tuple(second), action="test"))
    assert not [c for c in sent if c.startswith("CONFIG FILTER RULE REMOVE")]
    assert len([c for c in sent if c.startswith(render.INSERT)]) == len(wanted) - len(kept)
    assert [r.line for r in drv.policy("read") if r.ours] == wanted


def test_the_flush_reads_which_slot_is_active_after_the_activation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another admin switches the active slot between Cordon's activation and its flush: the
    flush reads the active slot again (one `CONFIG SLOT LIST`, only when there are hosts to
    flush) and, not finding the block rules in that policy, flushes nothing and says so."""
    dev = Device(
        name="t",
        interfaces={},
        slots={"05": {"name": "filter05", "lines": []}, "06": {"name": "filter06", "lines": []}},
        active="05",
    )
    monkeypatch.setattr(Device, "load", lambda self: None)  # no kernel here
    drv = StormshieldDriver(Target.of(load(ARMOR), "cb-sns"))
    sent: list[str] = []

    def cmd(c: str, operation: str, *, check: bool = True) -> serverd.Reply:
        sent.append(c)
        try:
            body = dev.run(c)
        except Refused as exc:
            raise CommandRejected("cb-sns", operation, c, str(exc)) from None
        if c == "CONFIG FILTER ACTIVATE":
            dev.run("CONFIG SLOT ACTIVATE type=filter slot=06")  # the other admin, meanwhile
        return answer(
            b'<?xml version="1.0"?>\n<nws code="100" msg="OK">' + body.encode() + b"</nws>"
        )(c, operation, check=check)

    monkeypatch.setattr(drv, "_cmd", cmd)
    monkeypatch.setattr(drv, "connect", lambda: None)
    wanted, objects = lines(QUARANTINE)
    with pytest.raises(DeviceError, match="lacks Cordon rule"):
        drv.apply(ChangeSet(tuple(objects + wanted), action="test"))
    after = sent[sent.index("CONFIG FILTER ACTIVATE") + 1 :]
    assert after[0] == "CONFIG SLOT LIST type=filter"
    assert after[1].startswith("CONFIG FILTER EXPLICIT index=6 ")
    assert not [c for c in sent if c.startswith(flush.COMMAND)]
    sent.clear()
    drv.apply(render_normal())  # no host to flush: no slot read after the activation
    assert sent[-1] == "CONFIG FILTER ACTIVATE"
