"""The daemon API on a real Unix socket, driven by the real client, against the fake backend
and against the real service (`backend` is parametrized: `fake`, `real`): each role's allowed and
refused actions, break-glass, the caller's identity in every audit event, every refusal audited,
bad requests refused clearly with nothing changed, and the backend's errors reaching the client.

Every state a test needs (a run awaiting approval, an open incident) is made through the API by
zed, an operator, the same way for both; the real service sends nothing: its pool reaches no
device and counts every attempt, checked to be none after each test."""

from __future__ import annotations

import grp
import json
import os
import pwd
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.api.auth import Caller, Policy, Role
from agent.api.client import Client, Routes
from agent.api.http import make_app
from agent.errors import (
    AccessRefused,
    ApprovalError,
    AuditError,
    ConfigError,
    CordonError,
    DaemonError,
    DeviceError,
    LockError,
    NotFound,
    PlanError,
    PlaybookError,
    RunError,
    SecretError,
)
from agent.service.changes import version
from agent.service.service import Service
from tests.conftest import EXAMPLE, require_root
from tests.daemon.fakes import FakeBackend, Recorder, Server, records

ClientAs = Callable[[str], Routes]

HELD = "nantes-jules-verne"  # the site of the run that waits for approval (R1)
SITE_A = "rennes-la-sagesse"  # where the tests' other runs go (HELD is locked by R1)
SITE_B = "saint-nazaire-estuaire"
INCIDENT = "matrix-drill"  # the open incident `incident.close` closes


@pytest.fixture(params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    """The backend the API is given: the fake, or the real service (over a pool that reaches no
    device), each behind a recorder of the calls the API made."""
    if request.param == "fake":
        yield FakeBackend()
        return
    service: Service = request.getfixturevalue("service")
    yield Recorder(service)
    assert service.pool.attempts == [], "the real service tried to reach a device"  # type: ignore[attr-defined]


@dataclass
class World:
    """Sets a state up through the API as zed, an operator; zed's own calls are not left in
    `backend.calls`, so a test sees only the calls its requests made."""

    backend: Recorder
    zed: Routes
    r1: str = ""
    digests: dict[tuple[str, str], str] = field(default_factory=dict)

    def quiet(self, fn: Callable[[], Any]) -> Any:
        n = len(self.backend.calls)
        try:
            return fn()
        finally:
            del self.backend.calls[n:]

    def digest(self, playbook: str, site: str) -> str:
        """The digest of the plan of `playbook` at `site` (plans are pure: it does not change)."""
        if (playbook, site) not in self.digests:
            plan = self.quiet(lambda: self.zed.plan(playbook, sites=[site]))
            self.digests[playbook, site] = plan["digest"]
        return self.digests[playbook, site]

    def held_run(self) -> str:
        """R1: zed's two-person run at HELD, awaiting a second operator (nothing is sent)."""
        digest = self.digest("hold", HELD)
        run = self.quiet(lambda: self.zed.run("hold", digest=digest, sites=[HELD]))
        assert run["status"] == "awaiting_approval"
        self.r1 = run["run_id"]
        return self.r1

    def reset(self) -> None:
        """Every open run cancelled (rolled back before anything was sent), an incident open,
        and a fresh R1."""

        def clean() -> None:
            for run in self.zed.runs(limit=100)["runs"]:
                if run["status"] in ("running", "awaiting_approval"):
                    self.zed.rollback(run["run_id"], reason="test reset")
            self.zed.incident("open", reason="drill", name=INCIDENT, site=HELD)

        self.quiet(clean)
        self.held_run()

    def runs(self) -> list[dict[str, Any]]:
        """Every run the backend holds, read behind the API's back (nothing recorded)."""
        caller = Caller("zed", 0, frozenset({Role.OPERATOR}), "token")
        return list(self.backend.inner.list_runs(caller, limit=1000)["runs"])


@pytest.fixture
def world(backend: Recorder, client_as: ClientAs) -> World:
    return World(backend, client_as("zed"))


# One request per route, R1 being zed's run awaiting approval at HELD.
REQUESTS: dict[str, Callable[[Routes, World], Any]] = {
    "status": lambda c, w: c.status(),
    "plan": lambda c, w: c.plan("routine", sites=[SITE_A]),
    "runs": lambda c, w: c.runs(limit=5),
    "show": lambda c, w: c.show(w.r1),
    "approve": lambda c, w: c.approve(w.r1, reason="checked the plan"),
    "rollback": lambda c, w: c.rollback(w.r1, reason="back to normal"),
    "attest": lambda c, w: c.attest(w.r1, site=HELD, zone="icu", reason="scanned clean"),
    "incident.open": lambda c, w: c.incident("open", reason="ransomware", site=SITE_A),
    "incident.close": lambda c, w: c.incident("close", reason="contained", name=INCIDENT),
    "audit.report": lambda c, w: c.audit_report(run=w.r1),
    "run.routine": lambda c, w: c.run(
        "routine", digest=w.digest("routine", SITE_A), sites=[SITE_A]
    ),
    "run.emergency-with-reason": lambda c, w: c.run(
        "preventive-degraded",
        digest=w.digest("preventive-degraded", SITE_B),
        sites=[SITE_B],
        reason="attack nearby",
    ),
    "run.emergency-no-reason": lambda c, w: c.run(
        "preventive-degraded", digest=w.digest("preventive-degraded", SITE_B), sites=[SITE_B]
    ),
}
READS = {"status", "runs", "show"}
OPERATOR = set(REQUESTS)
# alice: on call; bob: operator; dave: auditor; olivia: both on call and operator; root: operator
ALLOWED = {
    "root": OPERATOR,
    "bob": OPERATOR,
    "olivia": OPERATOR,
    "alice": READS | {"plan", "run.emergency-with-reason"},
    "dave": READS | {"audit.report"},
}


def action_of(request: str) -> str:
    return "run" if request.startswith("run.") else request


@pytest.mark.parametrize("user", sorted(ALLOWED))
def test_role_matrix_allowed_and_refused(
    user: str, client_as: ClientAs, backend: Recorder, world: World, audit_log: Path
) -> None:
    """Each user may make exactly their role's requests; each refusal is a 403 that reaches no
    backend method and is audited as access.refused with actor, role, action and why."""
    client = client_as(user)
    wrong = []
    for name, request in REQUESTS.items():
        world.reset()
        world.digest("routine", SITE_A)  # planned by zed, before the request is watched
        world.digest("preventive-degraded", SITE_B)
        before = len(backend.calls)
        refused_before = len(records(audit_log, "access.refused"))
        try:
            request(client, world)
            outcome = "allowed"
        except AccessRefused as err:
            outcome = "refused" if err.exit_code == 13 else f"exit code {err.exit_code}"
        calls = backend.calls[before:]
        refusals = records(audit_log, "access.refused")[refused_before:]
        want = "allowed" if name in ALLOWED[user] else "refused"
        if outcome != want:
            wrong.append(f"{name}: {outcome}, expected {want}")
        elif outcome == "allowed":
            assert [(c.user, c.via) for c in calls] == [
                (user, "peer" if user == "root" else "token")
            ]
            assert refusals == []
        else:
            assert calls == [], name
            assert len(refusals) == 1, name
            r = refusals[0]
            assert (r["actor"], r["action"], r["outcome"]) == (user, action_of(name), "refused")
            assert r["why"].startswith("refused: ")
    assert wrong == []


def test_refusal_record_names_the_role(client_as: ClientAs, audit_log: Path) -> None:
    """The refusal record carries the caller's role(s) and how they were identified."""
    with pytest.raises(AccessRefused) as info:
        client_as("dave").rollback("R1")
    assert (
        info.value.hint
        == "rollback needs the role operator (see " + str(audit_log.parent / "roles.yaml") + ")"
    )
    (r,) = records(audit_log, "access.refused")
    assert (r["actor"], r["role"], r["via"], r["action"]) == (
        "dave",
        "auditor",
        "token",
        "rollback",
    )
    assert r["why"] == "refused: dave (auditor) may not rollback"


# -- break-glass and the two-person rule -------------------------------------------------------


def test_break_glass_run_by_oncall_is_flagged_and_skips_approval(
    client_as: ClientAs, backend: Recorder, world: World, audit_log: Path
) -> None:
    """On-call alone starts a two-person emergency playbook with a reason: no approval wait,
    the backend is told it is break-glass, and its events carry alice's identity."""
    digest = world.digest("hold-emergency", SITE_A)
    result = client_as("alice").run(
        "hold-emergency", digest=digest, sites=[SITE_A], reason="ransomware at la-sagesse"
    )
    assert (result["status"], result["break_glass"], result["needs_approval"]) == (
        "running",
        True,
        False,
    )
    (call,) = backend.calls
    assert call.args["break_glass"] is True
    assert call.args["needs_approval"] is False
    assert call.args["reason"] == "ransomware at la-sagesse"
    (flag,) = records(audit_log, "run.break_glass")
    assert (flag["actor"], flag["role"], flag["via"]) == ("alice", "oncall", "token")
    assert flag["reason"] == "ransomware at la-sagesse"
    assert flag["run_id"] == result["run_id"]


def test_break_glass_without_reason_is_refused_with_a_hint(
    client_as: ClientAs, backend: Recorder, world: World, audit_log: Path
) -> None:
    digest = world.digest("hold-emergency", SITE_A)
    with pytest.raises(AccessRefused) as info:
        client_as("alice").run("hold-emergency", digest=digest, sites=[SITE_A])
    assert "--reason" in info.value.message
    assert info.value.hint is not None and "--reason" in info.value.hint
    assert backend.calls == []
    assert world.runs() == []
    (r,) = records(audit_log, "access.refused")
    assert (r["actor"], r["action"]) == ("alice", "run")


def test_blank_reason_is_a_bad_request(
    client_as: ClientAs, backend: Recorder, world: World
) -> None:
    """A reason of spaces is no reason: refused as invalid input naming the field."""
    digest = world.digest("hold-emergency", SITE_A)
    with pytest.raises(ConfigError) as info:
        client_as("alice").run("hold-emergency", digest=digest, sites=[SITE_A], reason="   ")
    assert "reason: reason is empty" in info.value.message
    assert backend.calls == []
    assert world.runs() == []


# test_two_person_rule: against the real service, in tests/daemon/test_api_real.py (the fake
# backend does not re-implement the rule it stands in for).


def test_operator_also_on_call_may_break_glass(
    client_as: ClientAs, backend: Recorder, world: World
) -> None:
    """olivia (operator and on call) with a reason skips the wait on an emergency playbook;
    without one she waits for approval like any operator."""
    olivia = client_as("olivia")
    held = olivia.run(
        "hold-emergency", digest=world.digest("hold-emergency", SITE_A), sites=[SITE_A]
    )
    now = olivia.run(
        "hold-emergency",
        digest=world.digest("hold-emergency", SITE_B),
        sites=[SITE_B],
        reason="attack",
    )
    flags = [(c.args["break_glass"], c.args["needs_approval"]) for c in backend.calls]
    assert flags == [(False, True), (True, False)]
    assert [held["status"], now["status"]] == ["awaiting_approval", "running"]


# -- identity ----------------------------------------------------------------------------------


def test_peer_identity_is_bound_into_backend_events(
    client_as: ClientAs, backend: Recorder, world: World, audit_log: Path
) -> None:
    """Without a token the caller is the socket peer's OS user (root here, operator by
    `root_is`), and the events the backend logs during the request carry that identity."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    digest = world.digest("routine", SITE_A)
    client_as("root").run("routine", digest=digest, sites=[SITE_A])
    assert [(c.name, c.user, c.via) for c in backend.calls] == [("start_run", me, "peer")]
    (started,) = records(audit_log, "run.started")
    assert (started["actor"], started["role"], started["via"], started["uid"]) == (
        me,
        "operator",
        "peer",
        os.geteuid(),
    )


def test_wrong_token_is_refused_audited_and_never_written(
    server: Server, backend: Recorder, audit_log: Path, tokens: dict[str, str]
) -> None:
    """erin's token is in no roles entry: refused, audited under the connecting OS user, and the
    token appears neither in the answer nor in the log."""
    with Client(server.path, token=tokens["erin"]) as erin, pytest.raises(AccessRefused) as info:
        erin.status()
    assert tokens["erin"] not in info.value.message
    assert backend.calls == []
    (r,) = records(audit_log, "access.refused")
    assert (r["actor"], r["via"], r["action"]) == (
        pwd.getpwuid(os.geteuid()).pw_name,
        "token",
        "status",
    )
    for path in audit_log.rglob("*"):
        if path.is_file():
            assert tokens["erin"] not in path.read_text(encoding="utf-8", errors="replace")


def test_valid_tokens_never_reach_the_log(
    client_as: ClientAs, world: World, audit_log: Path, tokens: dict[str, str]
) -> None:
    client_as("bob").run("routine", digest=world.digest("routine", SITE_A), sites=[SITE_A])
    with pytest.raises(AccessRefused):
        client_as("dave").rollback("R1")
    text = "".join(p.read_text(encoding="utf-8") for p in audit_log.glob("*.jsonl"))
    assert "bob" in text and "dave" in text
    assert all(token not in text for token in tokens.values())


@pytest.mark.parametrize("header", ["Basic Ym9iOnNlY3JldA==", "Bearer", "token abc"])
def test_malformed_authorization_header_is_refused(
    server: Server, backend: Recorder, audit_log: Path, header: str
) -> None:
    with raw(server) as http:
        response = http.get("/v1/status", headers={"Authorization": header})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "AccessRefused"
    assert backend.calls == []
    assert len(records(audit_log, "access.refused")) == 1


# -- bad requests change nothing ---------------------------------------------------------------


@pytest.fixture
def raw_http(server: Server) -> Iterator[httpx.Client]:
    with raw(server) as http:
        yield http


def raw(server: Server) -> httpx.Client:
    """An HTTP client on the socket that sends whatever it is given (as root: an operator)."""
    require_root()
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(server.path)), base_url="http://cordon"
    )


BAD_REQUESTS = [
    # (method, url, body, status, type, words in the message)
    ("POST", "/v1/runs", b'{"playbook": "segment",', 400, "ConfigError", "malformed JSON"),
    ("POST", "/v1/runs", b"[1, 2]", 400, "ConfigError", "the body must be a JSON object"),
    (
        "POST",
        "/v1/plan",
        b'{"playbook": "segment", "force": true}',
        400,
        "ConfigError",
        "force: unknown field",
    ),
    (
        "POST",
        "/v1/runs",
        b'{"playbook": "segment", "digest": "d", "soak_seconds": "30"}',
        400,
        "ConfigError",
        "soak_seconds: Input should be a valid integer",
    ),
    (
        "POST",
        "/v1/runs",
        b'{"playbook": "segment", "digest": "d", "sites": ["La Sagesse"]}',
        400,
        "ConfigError",
        "sites[0]: 'La Sagesse' is not a valid name",
    ),
    (
        "POST",
        "/v1/runs",
        b'{"playbook": "../etc/passwd", "digest": "d"}',
        400,
        "ConfigError",
        "playbook: '../etc/passwd' is not a valid name",
    ),
    (
        "POST",
        "/v1/runs",
        b'{"playbook": "segment"}',
        400,
        "ConfigError",
        "digest: required field is missing",
    ),
    (
        "POST",
        "/v1/runs",
        b'{"playbook": "no-such-playbook", "digest": "d"}',
        422,
        "PlaybookError",
        "playbooks/no-such-playbook.yaml: no such playbook file",
    ),
    (
        "POST",
        "/v1/runs/R1%2F..%2Fx/rollback",
        b"{}",
        400,
        "ConfigError",
        "run_id: 'R1/../x' is not a valid id",
    ),
    ("POST", "/v1/runs/R_1/approve", b"{}", 400, "ConfigError", "run_id: 'R_1' is not a valid id"),
    (
        "POST",
        "/v1/incidents",
        b'{"action": "delete", "reason": "x"}',
        400,
        "ConfigError",
        "action: Input should be 'open' or 'close'",
    ),
    (
        "POST",
        "/v1/runs/R1/attest",
        b'{"site": "nantes-jules-verne", "zone": "icu"}',
        400,
        "ConfigError",
        "reason: required field is missing",
    ),
    (
        "GET",
        "/v1/runs?limit=0",
        None,
        400,
        "ConfigError",
        "limit: Input should be greater than or equal to 1",
    ),
    ("GET", "/v1/runs?limit=5&limit=6", None, 400, "ConfigError", "limit: given more than once"),
    ("GET", "/v1/runs?order=asc", None, 400, "ConfigError", "order: unknown field"),
    (
        "GET",
        "/v1/runs/R1?wait=forever",
        None,
        400,
        "ConfigError",
        "wait='forever': expected seconds from 0 to 30",
    ),
    ("GET", "/v1/runs/R1?wait=31", None, 400, "ConfigError", "wait='31': expected seconds"),
    (
        "GET",
        "/v1/runs/R1?wait=1&since=xyz",
        None,
        400,
        "ConfigError",
        "since='xyz': expected the 16 hex digits",
    ),
    ("GET", "/v1/audit/report?run=a%20b", None, 400, "ConfigError", "run: 'a b' is not a valid id"),
    ("GET", "/v1/audit/report", None, 400, "ConfigError", "name a run or an incident"),
    (
        "POST",
        "/v1/runs",
        b"{" + b" " * (70 * 1024) + b"}",
        413,
        "ConfigError",
        "request body too large: at most 65536 bytes",
    ),
    ("DELETE", "/v1/runs/R1", None, 405, "ConfigError", "method not allowed: DELETE /v1/runs/R1"),
    ("GET", "/v1/secrets", None, 404, "NotFound", "no such API route: GET /v1/secrets"),
    ("GET", "/", None, 404, "NotFound", "no such API route: GET /"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "kind", "words"),
    BAD_REQUESTS,
    ids=[f"{m} {u[:40]} {w[:30]}" for m, u, _, _, _, w in BAD_REQUESTS],
)
def test_bad_request_is_refused_clearly_and_changes_nothing(
    raw_http: httpx.Client,
    backend: Recorder,
    world: World,
    audit_log: Path,
    method: str,
    url: str,
    body: bytes | None,
    status: int,
    kind: str,
    words: str,
) -> None:
    """Malformed, unknown, wrongly typed or oversized: a JSON error naming the problem, exit
    code 2, no backend call, and an access.refused record."""
    r1 = world.held_run()
    runs = world.runs()
    assert [r["run_id"] for r in runs] == [r1]
    response = raw_http.request(method, url, content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert words in error["message"]
    assert error["exit_code"] == 2
    assert "Traceback" not in response.text
    assert backend.calls == []
    assert world.runs() == runs
    (refusal,) = records(audit_log, "access.refused")
    assert refusal["actor"] == pwd.getpwuid(os.geteuid()).pw_name
    assert words in refusal["why"]


def test_show_long_poll_answers_once_the_run_changed(
    client_as: ClientAs, backend: Recorder, world: World
) -> None:
    """`GET /v1/runs/<id>?wait=&since=`: the run as it is when nothing changed within the wait;
    while zed rolls the run back, the answer shows it cancelled, with a new version."""
    r1 = world.held_run()
    bob = client_as("bob")
    first = bob.show(r1)
    since = version(first)
    assert bob.show(r1, wait=0.2, since=since) == first
    assert bob.show(r1, wait=5, since="0" * 16) == first  # another version: answered at once

    def roll_back_once_bob_waits() -> None:
        while not any(c.name == "wait_run" and c.args["wait"] == 30 for c in backend.calls):
            time.sleep(0.01)
        world.zed.rollback(r1, reason="changed while bob waits")

    changer = threading.Thread(target=roll_back_once_bob_waits)
    changer.start()
    try:
        changed = bob.show(r1, wait=30, since=since)
    finally:
        changer.join()
    assert changed["status"] == "cancelled"
    assert version(changed) != since
    assert version(changed) == version(bob.show(r1))


def test_waiting_readers_never_hold_up_other_requests(client_as: ClientAs, world: World) -> None:
    """Eight long-polls waiting on an unchanged run (more than the threads other requests use
    on a 2-core machine): `status` is answered while all of them still wait; zed's rollback
    then answers each of them."""
    r1 = world.held_run()
    since = version(client_as("bob").show(r1))
    answers: list[dict[str, Any]] = []

    def wait() -> None:
        # as a follower does: a long-poll that ends unchanged (its 30 s, the most a server
        # grants, can pass before the rollback on a loaded machine) is asked again
        while True:
            answer = client_as("bob").show(r1, wait=30, since=since)
            if version(answer) != since:
                answers.append(answer)
                return

    readers = [threading.Thread(target=wait) for _ in range(8)]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 120
        while sum(c.name == "wait_run" for c in list(world.backend.calls)) < 8:
            assert time.monotonic() < deadline, "the long-polls never reached the backend"
            time.sleep(0.01)
        assert client_as("dave").status()["sites"]
        assert answers == []
    finally:
        world.zed.rollback(r1, reason="release the readers")
        for reader in readers:
            reader.join()
    assert [a["status"] for a in answers] == ["cancelled"] * 8


def test_unknown_playbook_error_carries_its_issues(client_as: ClientAs) -> None:
    """The client raises the same PlaybookError, with its file and cause."""
    with pytest.raises(PlaybookError) as info:
        client_as("bob").run("no-such-playbook", digest="d")
    assert info.value.exit_code == 2
    assert [i.file for i in info.value.issues] == ["playbooks/no-such-playbook.yaml"]
    assert info.value.issues[0].message == "no such playbook file"


def test_unknown_site_and_run_are_not_found(
    client_as: ClientAs, world: World, audit_log: Path
) -> None:
    """The backend's NotFound reaches the client as NotFound (exit 2); no run was made."""
    digest = world.digest("routine", SITE_A)
    with pytest.raises(NotFound) as site:
        client_as("bob").run("routine", digest=digest, sites=["nowhere"])
    assert site.value.message == f"no site nowhere in the inventory {EXAMPLE}"
    assert site.value.exit_code == 2
    with pytest.raises(NotFound) as run:
        client_as("dave").show("R9")
    assert run.value.message == "no run R9"
    assert world.runs() == []
    assert [r["action"] for r in records(audit_log, "access.refused")] == ["run", "show"]


# -- errors from the backend -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "exit_code"),
    [
        (LockError("site st-malo is held by run R7", hint="wait for it"), 409, 5),
        (RunError("run refused"), 409, 4),
        (DeviceError("fw-st-malo", "apply", "connection reset"), 502, 6),
        (AuditError("audit log cannot be written: disk full"), 500, 7),
        (NotFound("no run R9"), 404, 2),
        (ApprovalError("run R1 is not awaiting approval"), 409, 14),
        (AccessRefused("only the incident's declarer may close it"), 403, 13),
        (PlanError("the plan changed since it was shown", hint="plan again"), 422, 3),
        (SecretError("ssh key of fw1: file missing"), 500, 2),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, CordonError) else str(v),
)
def test_backend_errors_keep_type_exit_code_and_hint(
    server: Server,
    backend: Recorder,
    error: CordonError,
    status: int,
    exit_code: int,
) -> None:
    require_root()  # the peer is root: an operator
    backend.fail_with = error
    with raw(server) as http:
        assert http.get("/v1/status").status_code == status
    with Client(server.path) as client, pytest.raises(CordonError) as info:
        client.status()
    assert type(info.value) is type(error)
    assert (info.value.message, info.value.hint, info.value.exit_code) == (
        error.message,
        error.hint,
        exit_code,
    )
    if isinstance(error, DeviceError):
        assert isinstance(info.value, DeviceError)
        assert (info.value.device, info.value.operation) == ("fw-st-malo", "apply")


def test_unexpected_exception_is_a_safe_500(
    server: Server, backend: Recorder, audit_log: Path
) -> None:
    """A bug in the backend answers 500 with a generic message: no traceback, no detail."""
    require_root()  # the peer is root: an operator
    backend.fail_with = KeyError("password=hunter2 in /etc/cordon/creds")
    with raw(server) as http:
        response = http.get("/v1/status")
    assert response.status_code == 500
    assert "hunter2" not in response.text and "Traceback" not in response.text
    with Client(server.path) as client, pytest.raises(DaemonError) as info:
        client.status()
    assert info.value.message == "internal error in the daemon; nothing more is said here"
    assert info.value.exit_code == 11
    assert records(audit_log, "access.refused") == []


def test_registered_secrets_are_scrubbed_from_error_messages(
    server: Server, backend: Recorder, tokens: dict[str, str]
) -> None:
    """A backend error quoting a known secret reaches the client with the secret masked."""
    require_root()  # the peer is root: an operator
    backend.fail_with = RunError(f"device said: bad key {tokens['bob']}")
    with Client(server.path) as client, pytest.raises(RunError) as info:
        client.status()
    assert tokens["bob"] not in info.value.message
    assert "[REDACTED]" in info.value.message


def test_health_needs_no_role(tmp_path: Path, backend: Recorder, audit_log: Path) -> None:
    """/v1/health answers any process that can open the socket, even with no role at all."""
    roles = tmp_path / "empty-roles.yaml"
    roles.write_text("auditor: [dave]\n")
    app = make_app(backend, Policy.load(roles))
    with Server(app, tmp_path / "s" / "cordon.sock") as srv, Client(srv.path) as client:
        assert client.health()["ok"] is True
        with pytest.raises(AccessRefused) as info:
            client.status()
    assert "has no role in the roles file" in info.value.message
    assert backend.calls == []


# -- another OS user on the socket -------------------------------------------------------------


def as_nobody(socket_path: Path) -> dict[str, Any]:
    """Call `status` through the real client from a forked child that has become nobody:nogroup
    (no other group). The client is made before the fork: the child reads no file of root's."""
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    with Client(socket_path) as warm:  # as root, so that every lazy import is done by now
        warm.health()
    client = Client(socket_path)  # a fresh pool: the child opens its own connection
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        out: dict[str, Any]
        try:
            os.setgroups([])
            os.setgid(nogroup)
            os.setuid(nobody)
            try:
                out = {"ok": client.status(), "uid": os.getuid()}
            except CordonError as err:
                out = {"error": type(err).__name__, "exit_code": err.exit_code}
                out["message"] = err.message
        except BaseException as exc:  # report anything, never run pytest's code in the child
            out = {"crash": repr(exc)}
        data = json.dumps(out).encode()
        while data:
            data = data[os.write(write_end, data) :]
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    client.close()
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, Any] = json.loads(data)
    assert "crash" not in result, result
    return result


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user can traverse (pytest's tmp_path is root's alone)."""
    require_root()
    path = Path(tempfile.mkdtemp(prefix="cordon-sock-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in sorted(path.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        path.rmdir()


def test_socket_refuses_other_users(
    open_dir: Path, backend: Recorder, policy: Policy, audit_log: Path
) -> None:
    """Mode 0660 root:root: `nobody` cannot even connect, although it can reach the socket."""
    state = open_dir / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    with Server(make_app(backend, policy), state / "cordon.sock") as srv:
        assert (srv.path.stat().st_mode & 0o777, srv.path.stat().st_gid) == (0o660, 0)
        result = as_nobody(srv.path)
    assert result["error"] == "AccessRefused"
    assert result["exit_code"] == 13
    assert "permission denied" in result["message"]
    assert backend.calls == []


def test_socket_group_member_is_identified_by_peer_credentials(
    open_dir: Path, backend: Recorder, tmp_path: Path, audit_log: Path
) -> None:
    """With the socket's group given, `nobody` (in that group) connects and is known by its uid:
    as an auditor it reads status; with no role it is refused, and that is audited."""
    nobody = pwd.getpwnam("nobody").pw_uid
    for roles, expect_ok in (("auditor: [nobody]\n", True), ("auditor: [dave]\n", False)):
        backend.calls.clear()
        path = tmp_path / "roles.yaml"
        path.write_text(roles)
        sock = open_dir / ("ok" if expect_ok else "no") / "cordon.sock"
        with Server(make_app(backend, Policy.load(path)), sock, group="nogroup") as srv:
            assert srv.path.parent.stat().st_mode & 0o777 == 0o750
            result = as_nobody(srv.path)
        if expect_ok:
            assert result["uid"] == nobody
            assert result["ok"]["sites"], result
            assert [(c.name, c.user, c.via) for c in backend.calls] == [
                ("status", "nobody", "peer")
            ]
        else:
            assert result["error"] == "AccessRefused"
            assert result["message"] == "refused: nobody has no role in the roles file"
            assert backend.calls == []
    (refusal,) = records(audit_log, "access.refused")
    assert (refusal["actor"], refusal["uid"], refusal["via"]) == ("nobody", nobody, "peer")
