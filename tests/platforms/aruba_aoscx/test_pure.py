"""aruba_aoscx without a device: the renderer's ACLs and their exact read-back, what it refuses,
the parser's refusals (injection), AOS-CX port names in the inventory, and the twin API's error
shapes against the documented fixture."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path
from typing import Any

import paramiko
import pytest

from agent.drivers.base import ChangeSet, Target, Timeouts
from agent.errors import CommandRejected, PlanError
from agent.inventory import load
from agent.inventory.models import Interface
from agent.network.state import DeviceState, NftRule
from agent.platforms.aruba_aoscx import cli, parse, render, twin_cli
from agent.platforms.aruba_aoscx.driver import AoscxDriver
from agent.platforms.aruba_aoscx.twin_api import Refused, Switch
from agent.platforms.capabilities import ReadsInterfaces, having

FIXTURES = Path(render.__file__).parent / "fixtures"
KEEP = NftRule("accept", "vlan110", "vlan120", "198.18.96.10", "198.18.97.10", None, 2575, "keep")
REPLY = NftRule("accept", "vlan120", "vlan110", "198.18.97.10", "198.18.96.10", 2575, None, "keep")
CUT_IN = NftRule("drop", iif="vlan120", tag="q")
CUT_OUT = NftRule("drop", oif="vlan120", tag="q")
STATE = DeviceState(rules=frozenset({KEEP, REPLY, CUT_IN, CUT_OUT}))


def test_must_survive_entries_come_first_and_replies_are_established() -> None:
    """In vlan120's routed-in ACL the reply accept precedes the deny, uses `established`, and
    the ACL ends with a permit (AOS-CX's implicit deny would otherwise cut everything else)."""
    acls = render.acls(STATE)
    words = [a.text for a in acls[("vlan120", "in")]]
    assert words == [
        "permit tcp 198.18.97.10 eq 2575 198.18.96.10 established count",
        "deny any any any count",
        "permit any any any count",
    ]


def test_read_back_of_the_objects_is_the_script() -> None:
    """The REST objects the driver writes from a script read back as the same text."""
    text = render.script(STATE)
    desired = parse.parse_script(text.splitlines())
    acls = {n: {"cfg_aces": aces} for n, aces in desired.acls.items()}
    ifs = {
        i: {f"aclv4_routed_{w}_cfg": {parse.acl_key(n): parse.acl_uri(n)} for w, n in a.items()}
        for i, a in desired.applied.items()
    }
    assert parse.ours_text(acls, ifs) == text
    assert parse.comments_in(text) == render.comments(STATE)


def test_rules_aoscx_cannot_hold_are_refused() -> None:
    """A zone-to-zone block without addresses, and a counting rule, are plan errors."""
    with pytest.raises(PlanError, match="egress interface"):
        render.script(DeviceState(rules=frozenset({NftRule("drop", "vlan110", "vlan120")})))
    with pytest.raises(PlanError, match="count"):
        render.script(
            DeviceState(rules=frozenset({NftRule("count", iif="vlan110", daddr="198.18.97.1")}))
        )


@pytest.mark.parametrize(
    "line",
    [
        "access-list ip OTHER-ACL",
        "access-list ip CORDON-IN-x\n    10 permit any any any\nno access-list ip X",
        "    10 permit any any any ; reload",
        "interface vlan110\n    apply access-list ip FOREIGN routed-in",
        "access-list ip CORDON-IN-x\n    10 permit any 1.2.3.4; any",
        "access-list ip CORDON-IN-x\n    10 permit any any any\x1b",
    ],
)
def test_scripts_outside_cordons_acls_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse.parse_script(line.splitlines())


def test_tags_cannot_inject_into_a_comment() -> None:
    """A tag with quotes, newlines or ';' reaches the switch cleaned."""
    rule = NftRule("drop", iif="vlan110", tag='x"; no access-list\nreload')
    note = render.comment(rule, "in")
    assert all(c.isprintable() and c not in '";\n' for c in note)


@pytest.mark.parametrize("name", ["1/1/1", "1/1/49:2", "1/1/49.110", "vlan110", "Gi1/0/1"])
def test_aoscx_port_names_are_valid_interface_names(name: str) -> None:
    assert Interface(name=name).name == name


@pytest.mark.parametrize(
    "name",
    ["1/1/1;reload", "1//1", "1", "1/1/1\n", "1/1/1 x", "1/1/1/1", "-1/1", "1/a/1", "1/1/1."],
)
def test_digit_names_are_no_way_to_inject(name: str) -> None:
    with pytest.raises(ValueError):
        Interface(name=name)


def switch() -> Switch:
    return Switch(
        {"hostname": "sw1", "interfaces": {"vlan110": "vl110"}, "username": "a", "password": "b"}
    )


def test_twin_api_refuses_as_the_fixture_says() -> None:
    """Unknown interface 404, malformed body and bad values 400, with the fixture's bodies."""
    shapes = json.loads((FIXTURES / "rest-subset.json").read_text())
    sw = switch()
    with pytest.raises(Refused) as unknown:
        sw.put_interface("1/1/9", {"admin_state": "down"})
    assert (unknown.value.status, unknown.value.message) == (
        404,
        shapes["interface"]["unknown"]["body"],
    )
    with pytest.raises(Refused) as bad:
        sw.put_interface("vlan110", {"admin_state": "off"})
    assert (bad.value.status, bad.value.message) == (
        400,
        shapes["interface_put"]["bad_value"]["body"],
    )
    with pytest.raises(Refused) as attr:
        sw.put_interface("vlan110", {"speed": 10})
    assert (attr.value.status, attr.value.message) == (
        400,
        shapes["interface_put"]["unknown_attribute"]["body"],
    )
    with pytest.raises(Refused) as ace:
        sw.put_acl(
            "CORDON-IN-x,ipv4",
            {"name": "CORDON-IN-x", "list_type": "ipv4", "cfg_aces": {"10": {"action": "allow"}}},
            create=True,
        )
    assert ace.value.status == 400
    with pytest.raises(Refused) as gone:
        sw.delete_acl("NOPE,ipv4")
    assert gone.value.status == 404


# -- round trips (#18): what the driver sends, recorded at its calls ----------------------------


def _driver(monkeypatch: pytest.MonkeyPatch) -> tuple[AoscxDriver, list[str]]:
    """An AOS-CX driver whose REST calls are recorded and answered as a switch with one port
    would answer them; nothing connected."""
    d = AoscxDriver(Target.of(load(Path(__file__).with_name("data") / "aoscx-lab.yaml"), "sw1"))
    calls: list[str] = []
    port = {"name": "1/1/3", "admin_state": "up", "description": "file server"}

    def call(method: str, rel: str, operation: str, payload: Any = None) -> tuple[int, bytes]:
        calls.append(f"{method} {rel}")
        if method != "GET":
            return 200, b""
        if rel.startswith("/system/interfaces/1%2F1%2F3"):
            return 200, json.dumps(port).encode()
        if rel.startswith("/system/interfaces/"):
            return 404, b"Object not found"
        return 200, json.dumps({"1/1/3": port}).encode()

    monkeypatch.setattr(d, "_call", call)
    return d, calls


def test_a_flow_verification_reads_the_interfaces_in_one_get(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, calls = _driver(monkeypatch)
    reader = having(d, ReadsInterfaces)
    assert reader is not None
    assert [i.name for i in reader.interfaces("decide")] == ["1/1/3"]
    assert len(calls) == 1 and calls[0].startswith("GET /system/interfaces?")


def test_a_port_shut_reads_that_port_only_and_a_missing_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, calls = _driver(monkeypatch)
    d._shut({"1/1/3": False})
    assert calls == [
        "GET /system/interfaces/1%2F1%2F3?selector=writable",
        "PUT /system/interfaces/1%2F1%2F3",
    ]
    with pytest.raises(CommandRejected, match="404"):
        d._shut({"1/1/9": False})


def test_the_checkpoint_arm_and_its_confirm_share_one_cli_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logins: list[list[str]] = []

    class Login:
        def __init__(self, *_a: Any) -> None:
            self.typed: list[str] = []
            self.usable = True
            logins.append(self.typed)

        def run(self, commands: list[str], operation: str) -> list[str]:
            self.typed += commands
            return [
                "Auto checkpoint mode expires in 1 minute(s)"  # HPE's CLI guide
                if c == "checkpoint auto 1"
                else "checkpoint AUTO20260101000000 created"
                if c == "checkpoint auto confirm"
                else "AUTO20260101000000  checkpoint"
                for c in commands
            ]

        def close(self) -> None:
            self.usable = False

        def alive(self) -> bool:
            return self.usable

    monkeypatch.setattr(cli, "Session", Login)
    d, _calls = _driver(monkeypatch)
    token = d.arm_revert(ChangeSet((), action="test"), 60)
    assert d.confirm(token) is True
    assert logins == [["checkpoint auto 1", "checkpoint auto confirm", "show checkpoint"]]
    assert d._cli is None  # closed after the confirm


# -- the kept CLI login: what the switch prints into it between the arm and the confirm ---------

# HPE's CLI guide, `checkpoint auto` (GUID-3AF7EBD5-218F-46E2-90D0-021B8EDBF1ED): after the arm
# the switch prints, into the session that armed it, this warning after its prompt, then a prompt.
WARNING = 'WARNING  Please "checkpoint auto confirm" within 2 minutes\r\nswitch# '


class _Chan(paramiko.Channel):
    """A switch's CLI channel: what it says arrives in chunks, one per `recv`, in order; each
    line sent queues its echo and the switch's answer (`answers`: command -> answer) behind what
    is already queued, as bytes arriving a round trip later would. A command without an answer
    gets none (a dead link)."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(0)
        self.answers = answers
        self.chunks: list[bytes] = []
        self.sent: list[str] = []
        self.late: list[bytes] = []  # arriving just after the next line is sent, before its echo

    def recv_ready(self) -> bool:
        return bool(self.chunks)

    def recv(self, nbytes: int) -> bytes:
        return self.chunks.pop(0)

    def sendall(self, s: bytes | bytearray) -> None:
        line = bytes(s).decode().rstrip("\n")
        self.sent.append(line)
        self.chunks += self.late
        self.late = []
        if line in self.answers:
            said = self.answers[line]
            self.chunks.append(f"{line}\r\n{said}\r\nswitch# ".replace("\r\n\r\n", "\r\n").encode())


class _Transport:
    sock = None

    def __init__(self) -> None:
        self.closed = False

    def is_active(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True


_SESSION = cli.Session


def _kept(chan: _Chan, command_s: float = 2.0) -> cli.Session:
    """A cli.Session over `chan`, as the arm left it (no SSH)."""
    s = object.__new__(_SESSION)
    s.target = Target.of(load(Path(__file__).with_name("data") / "aoscx-lab.yaml"), "sw1")
    s.timeouts = Timeouts(command=command_s)
    s.transport = _Transport()  # type: ignore[assignment]
    s.chan = chan
    return s


_ANSWERS = {
    "checkpoint auto 1": "Auto checkpoint mode expires in 1 minute(s)",
    "checkpoint auto confirm": "checkpoint AUTO20260101000000 created",
    "show checkpoint": "NAME                    TYPE        WRITER\n"
    "AUTO20260101000000      checkpoint  User",
    "": "",
}


@pytest.fixture
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    def wait(chan: object, timeout: float) -> bool:
        time.sleep(0.01)
        return False

    monkeypatch.setattr(cli, "wait_readable", wait)


@pytest.mark.usefixtures("_no_wait")
def test_the_confirm_reads_its_own_answer_past_the_warning_the_switch_printed_after_the_arm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented warning and a new prompt sit unread in the kept login when the confirm is
    sent: the confirm is read from its own echo on (the switch confirmed: True)."""
    chan = _Chan(_ANSWERS)
    d, _calls = _driver(monkeypatch)
    d._cli = _kept(chan)
    token = d.arm_revert(ChangeSet((), action="test"), 60)
    chan.chunks.append(WARNING.encode())
    assert d.confirm(token) is True
    assert "checkpoint auto confirm" in chan.sent


@pytest.mark.usefixtures("_no_wait")
def test_a_warning_arriving_after_the_send_is_not_read_as_the_answer() -> None:
    """The warning arrives after what was buffered was drained, before the command's echo (or
    between the echo and the answer): the answer is still the command's."""
    chan = _Chan(_ANSWERS)
    s = _kept(chan)
    chan.late.append(WARNING.encode())
    assert s.run(["checkpoint auto confirm"], "confirm") == [
        "checkpoint AUTO20260101000000 created"
    ]
    # a notice ending in the command's words is not its echo
    chan.late.append(b"WARNING  Please type: checkpoint auto confirm\r\nswitch# ")
    assert s.run(["checkpoint auto confirm"], "confirm") == [
        "checkpoint AUTO20260101000000 created"
    ]
    # between the echo and the answer
    chan.answers = {"checkpoint auto confirm": WARNING + "checkpoint AUTO20260101000000 created"}
    assert s.run(["checkpoint auto confirm"], "confirm") == [
        "checkpoint AUTO20260101000000 created"
    ]


@pytest.mark.usefixtures("_no_wait")
def test_a_kept_login_dead_at_confirm_time_is_replaced_by_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kept login still looks up (no keepalive told otherwise) but its channel answers
    nothing: an empty line gets no prompt, so it is dropped and the confirm goes over a new
    login (the confirm itself is sent once)."""
    dead = _Chan({})
    d, _calls = _driver(monkeypatch)
    d._cli = kept = _kept(dead)
    fresh = _Chan(_ANSWERS)
    monkeypatch.setattr(cli, "Session", lambda *_a: _kept(fresh))
    assert d.confirm("auto-1") is True
    assert dead.sent == [""]  # only the liveness probe: no confirm into the dead login
    assert fresh.sent == ["checkpoint auto confirm", "show checkpoint", "exit"]  # then closed
    assert kept.transport.closed  # type: ignore[attr-defined]


@pytest.mark.usefixtures("_no_wait")
def test_a_kept_login_never_confirmed_is_closed_once_its_checkpoint_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The armed change was given up (a failed audit, a fenced node, a failed restore: no
    confirm follows): the driver's next use past the checkpoint's minutes (the pool's keepalive
    ping, an apply) closes the login it kept for that confirm."""
    from agent.platforms.aruba_aoscx import driver as module  # noqa: PLC0415

    chan = _Chan(_ANSWERS)
    d, _calls = _driver(monkeypatch)
    d._cli = kept = _kept(chan)
    d.arm_revert(ChangeSet((), action="test"), 60)  # checkpoint auto 1
    d.ping()
    assert d._cli is kept and not kept.transport.closed  # type: ignore[attr-defined]
    later = time.monotonic() + 61
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=lambda: later))
    d.ping()
    assert d._cli is None and kept.transport.closed
    d._cli = again = _kept(_Chan(_ANSWERS))  # an apply past it closes it too
    d.apply(ChangeSet((), action="test"))
    assert d._cli is None and again.transport.closed


def test_the_twin_cli_warns_the_arming_session_as_the_fixture_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The twin's warning, printed after the prompt, is the fixture's (HPE's) line, then a
    prompt."""
    fixture = (FIXTURES / "cli-checkpoint.txt").read_text().splitlines()
    timer = twin_cli.warn_later({"warn_s": 0.0, "left": 2}, "switch# ")
    assert timer is not None
    timer.join()
    line, prompt = capsys.readouterr().out.split("\n")
    assert "switch# " + line in fixture and prompt == "switch# "
    assert twin_cli.warn_later({"text": "Invalid input: 61"}, "switch# ") is None
