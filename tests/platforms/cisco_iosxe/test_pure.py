"""cisco_iosxe without a device: the ACL renderer (placement, replies by `established`,
counters, refusals, injection), the parsers on the documented transcripts, and the twin's CLI
answering those transcripts line for line (configuration only: no effect on this machine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Expectation, Target
from agent.errors import CommandRejected, DeviceError, PlanError
from agent.inventory import load
from agent.network.state import DeviceState, NftRule
from agent.platforms import registry
from agent.platforms.capabilities import ReadsInterfaces, having
from agent.platforms.cisco_iosxe import parse, render
from agent.platforms.cisco_iosxe.driver import IosXeDriver, revert_minutes
from agent.platforms.cisco_iosxe.twin_device import Config, Device, Interface, Session

FIXTURES = Path(render.__file__).parent / "fixtures"
ACL = (FIXTURES / "acl.txt").read_text()

BLOCK = DeviceState(
    rules=frozenset(
        {
            NftRule("drop", "Vlan110", "Vlan120", tag="block"),
            NftRule("drop", "Vlan120", "Vlan110", tag="block"),
            NftRule("accept", "Vlan120", "Vlan110", "198.18.120.10", "198.18.110.10", None, 2575),
            NftRule("accept", "Vlan110", "Vlan120", "198.18.110.10", "198.18.120.10", 2575, None),
        }
    )
)


def test_block_renders_inbound_acls_with_the_keep_first() -> None:
    """Each SVI gets an inbound ACL: the must-survive accept before the drop, the reply as
    `established`, the other zone as its object-group, a final permit; bound `in`."""
    text = render.acl_script(BLOCK)
    lines = text.splitlines()
    assert lines[0] == render.SCRIPT_HEAD
    i = lines.index(" permit tcp host 198.18.110.10 eq 2575 host 198.18.120.10 established")
    assert lines.index(" deny ip any object-group CORDON-NET-Vlan120") > i
    assert " ip access-group " in text and text.count(" permit ip any any") == 2
    assert parse.rule_comments_in(text) == render.acl_comments(BLOCK)
    assert len(render.acl_comments(BLOCK)) == 4


def test_wan_rules_go_outbound_and_count_by_syn() -> None:
    """SVI to WAN rules sit in the WAN port's outbound ACL (source: the SVI's subnet); a
    counter permits and counts SYNs only, before the accept it shares a match with."""
    state = DeviceState(
        rules=frozenset(
            {
                NftRule("count", "Vlan120", "Gi1/0/48", tag="r: reconnect admin"),
                NftRule("accept", "Vlan120", "Gi1/0/48", tag="r: reconnect admin"),
                NftRule("accept", "Gi1/0/48", "Vlan120", tag="r: reconnect admin"),
                NftRule("drop", iif="Gi1/0/48", tag="cut"),
                NftRule("drop", oif="Gi1/0/48", tag="cut"),
            }
        )
    )
    text = render.acl_script(state)
    assert "ip access-list extended CORDON-O-Gi1_0_48-" in text
    assert " permit tcp object-group CORDON-NET-Vlan120 any match-all +syn -ack" in text
    assert " ip access-group CORDON-O-Gi1_0_48-" in text


def test_a_state_acls_cannot_express_is_refused() -> None:
    """A zone reconnected (accept to the WAN) while quarantined (drop in on its SVI): the
    split into two ACLs would cut what the state keeps open, so planning refuses."""
    state = DeviceState(
        rules=frozenset(
            {
                NftRule("accept", "Vlan120", "Gi1/0/48", tag="r"),
                NftRule("drop", iif="Vlan120", tag="q"),
            }
        )
    )
    with pytest.raises(PlanError, match="cannot give this state's verdicts"):
        render.acl_script(state)
    with pytest.raises(PlanError, match="one of them must be an SVI"):
        render.acl_script(DeviceState(rules=frozenset({NftRule("drop", "Gi1/0/1", "Gi1/0/2")})))


@pytest.mark.parametrize("name", ["Gi1/0/1 shutdown", "Vlan110\nno shutdown", "Gi1/0/1;x", ""])
def test_unsafe_interface_names_never_reach_the_cli(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        render.shut_lines([name], down=True)


def test_a_tag_cannot_break_out_of_its_remark() -> None:
    rule = NftRule("drop", iif="Vlan110", tag="x\nno ip access-list extended Y" + "z" * 200)
    text = render.remark(rule)
    assert "\n" not in text and len(text) <= render.REMARK_MAX


def test_registered_with_its_rules_method() -> None:
    spec = registry.platform("cisco_iosxe")
    assert spec.rules_by == "acl" and spec.shuts_by == "cli" and spec.l3_switch


def test_parsers_read_the_documented_transcripts() -> None:
    """Counters by remark, the exact remarks, the bindings, the archive and timer answers."""
    config, shown = ACL.split("site-sw#show ip access-lists\n")
    assert parse.counters(config, shown) == {
        "CORDON #2b7542cb must survive: pc-to-central": 12,
        "CORDON #2eff9aa6 block": 3,
    }
    assert parse.rule_comments_in(config) == {
        "CORDON #2b7542cb must survive: pc-to-central",
        "CORDON #2eff9aa6 block",
    }
    assert parse.bindings(config) == {("Vlan110", "in"): "CORDON-I-Vlan110-4a854262"}
    rollback = (FIXTURES / "rollback-confirmed-change.txt").read_text()
    assert parse.archive_enabled(rollback.split("site-sw#configure")[0])
    assert parse.rollback_pending(rollback.split("rollback timer\n")[1])
    assert not parse.rollback_pending(rollback.split("rollback timer\n")[2])
    missing = (FIXTURES / "archive-missing.txt").read_text()
    assert not parse.archive_enabled(missing)
    with pytest.raises(ValueError, match="no archive state"):
        parse.archive_enabled("garbage")


def test_revert_timer_in_whole_minutes() -> None:
    assert [revert_minutes(s) for s in (1, 60, 61, 30_000)] == [1, 1, 2, 120]


def _session(archive: bool = True) -> Session:
    ifaces = {n: Interface(n, n) for n in ("Gi1/0/5", "Vlan110", "Vlan120")}
    cfg = Config("site-sw", ifaces, archive=archive, archive_path="flash:cordon-archive")
    return Session(Device(cfg, 60.0, Path("/nonexistent"), effects=False), "cordon")


def replay(session: Session, transcript: str) -> None:
    """Type each prompted line of `transcript`; the answers must be the transcript's."""
    lines = transcript.splitlines()
    i = 0
    while i < len(lines):
        prompt, _, typed = lines[i].partition("#")
        assert session.prompt == prompt + "#", lines[i]
        expected = []
        i += 1
        while i < len(lines) and not lines[i].startswith("site-sw"):
            expected.append(lines[i])
            i += 1
        if typed:
            out, _ = session.handle(typed)
            if not typed.startswith("configure terminal revert") and "Time config" not in out:
                assert out.splitlines() == expected, typed


def test_twin_cli_answers_the_documented_error_shapes() -> None:
    replay(_session(), (FIXTURES / "errors.txt").read_text())


def test_twin_cli_rollback_and_missing_archive() -> None:
    session = _session()
    replay(session, (FIXTURES / "rollback-confirmed-change.txt").read_text().split("\n", 6)[6])
    bare = _session(archive=False)
    out, _ = bare.handle("configure terminal revert timer 1")
    assert out.strip() == "%Turn config archive on before using Rollback Confirmed Change"
    assert bare.prompt == "site-sw#"


# -- round trips (#18): the driver against the twin's CLI (no network), every line recorded ------


class _Recording:
    """Stands for the pinned netmiko session: each line typed into the twin's CLI session (the
    documented answers), recorded."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.typed: list[str] = []

    def command(self, line: str, *, read_timeout: float | None = None) -> str:
        self.typed.append(line)
        return self.session.handle(line)[0]


def _driver(
    monkeypatch: pytest.MonkeyPatch, archive: bool = True
) -> tuple[IosXeDriver, _Recording]:
    inv = load(Path(__file__).with_name("data") / "iosxe-pair.yaml")
    d = IosXeDriver(Target.of(inv, "site-sw"))
    cli = _Recording(_session(archive))
    monkeypatch.setattr(d, "_run", lambda operation, fn: fn(cli))
    return d, cli


def test_arming_reads_no_archive_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer read, the arm, `end`, the timer read back: the archive is not read before
    (the switch refuses the timer itself without it); the confirm is read back."""
    d, cli = _driver(monkeypatch)
    token = d.arm_revert(ChangeSet((), action="test"), 60)  # failing, nothing to disarm
    try:
        assert cli.typed == [
            "show archive config rollback timer",
            "configure terminal revert timer 1",
            "end",
            "show archive config rollback timer",
        ]
    finally:
        assert d.confirm(token)
    assert cli.session.dev.timer is None


def test_a_switch_without_archive_is_told_what_to_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, cli = _driver(monkeypatch, archive=False)
    with pytest.raises(DeviceError, match="archive is not configured"):
        d.arm_revert(ChangeSet((), action="test"), 60)
    assert cli.session.dev.timer is None and cli.session.prompt == "site-sw#"
    assert "show archive" in cli.typed  # read only once the switch refused


def test_a_flow_verification_reads_the_interfaces_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    d, cli = _driver(monkeypatch)
    reader = having(d, ReadsInterfaces)
    assert reader is not None
    assert {i.name for i in reader.interfaces("decide")} >= {"Gi1/0/5"}
    assert cli.typed == ["show interfaces"]


def test_an_acl_read_back_runs_no_show_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    d, cli = _driver(monkeypatch)
    d.verify(Expectation(table_present=False), timeout=0.0)
    assert cli.typed == ["show running-config"]


# -- a refused revert timer: the session that typed it is never reused ---------------------------


class _Odd(Session):
    """A switch without the archive whose refusal of the timer is not in the words third
    parties document (`%Turn config archive on ...`), and that may leave config mode."""

    def __init__(self, dev: Device, said: str, mode: str) -> None:
        super().__init__(dev, "cordon")
        self.said, self.after = said, mode

    def handle(self, line: str) -> tuple[str, bool]:
        if line.startswith("configure terminal revert timer"):
            self.mode = self.after
            return self.said, False
        return super().handle(line)


class _Logins:
    """Stands for the driver's session plumbing (`_run`, `_abort`): one login, each command
    recorded, kept until aborted or failed (not a CommandRejected), then a new one."""

    def __init__(self, make: Callable[[], Session]) -> None:
        self.make = make
        self.current: _Recording | None = None
        self.opened: list[_Recording] = []

    def run(self, operation: str, fn: Callable[[_Recording], object]) -> object:
        if self.current is None:
            self.current = _Recording(self.make())
            self.opened.append(self.current)
        try:
            return fn(self.current)
        except DeviceError as exc:
            if not isinstance(exc, CommandRejected):
                self.current = None
            raise

    def abort(self) -> None:
        self.current = None


@pytest.mark.parametrize(
    ("said", "mode"),
    [
        ("% Rollback Confirmed Change requires an archive path\n", "exec"),
        ("%Turn config archive on before using Rollback Confirmed Change\n", "config"),
        ("Archive is not set up: the timer cannot run\n", "exec"),  # no '%' at all
    ],
)
def test_a_refused_revert_timer_arms_nothing_drops_the_session_and_says_what_to_configure(
    monkeypatch: pytest.MonkeyPatch, said: str, mode: str
) -> None:
    """Any refusal of `configure terminal revert timer` (wording unknown, a `(config)#` prompt
    left behind): nothing armed, the session that typed it dropped, the archive read on a new
    one, and the error says what to configure."""
    inv = load(Path(__file__).with_name("data") / "iosxe-pair.yaml")
    d = IosXeDriver(Target.of(inv, "site-sw"))
    dev = _session(archive=False).dev
    logins = _Logins(lambda: _Odd(dev, said, mode))
    monkeypatch.setattr(d, "_run", logins.run)
    monkeypatch.setattr(d, "_abort", logins.abort)
    with pytest.raises(DeviceError, match="archive is not configured") as refused:
        d.arm_revert(ChangeSet((), action="test"), 60)
    assert not isinstance(refused.value, CommandRejected) or "archive" in refused.value.message
    assert dev.timer is None
    first, *later = logins.opened
    after = first.typed[first.typed.index("configure terminal revert timer 1") + 1 :]
    assert after in ([], ["end", "show archive config rollback timer"])  # its own read-back
    assert logins.current is not first  # dropped: never reused
    assert later and all("configure terminal revert timer 1" not in s.typed for s in later)
    assert "show archive" in later[0].typed


def test_a_refused_revert_timer_on_a_switch_with_its_archive_is_the_devices_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The archive is there, the timer refused anyway: the device's words, nothing armed, the
    session dropped."""
    inv = load(Path(__file__).with_name("data") / "iosxe-pair.yaml")
    d = IosXeDriver(Target.of(inv, "site-sw"))
    dev = _session(archive=True).dev
    logins = _Logins(lambda: _Odd(dev, "% Rollback is busy\n", "config"))
    monkeypatch.setattr(d, "_run", logins.run)
    monkeypatch.setattr(d, "_abort", logins.abort)
    with pytest.raises(CommandRejected, match="Rollback is busy"):
        d.arm_revert(ChangeSet((), action="test"), 60)
    assert dev.timer is None and len(logins.opened) == 2
    assert logins.opened[0].typed[-1] == "configure terminal revert timer 1"
    assert logins.current is not logins.opened[0]
