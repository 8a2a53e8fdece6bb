"""The daemon API against the real `Service` (no twin: a pool that reaches no device and counts
every attempt), for what a fake backend cannot show: playbooks read by the real loader (malformed,
named like a folder, `emergency: "false"`), the records the report reads (`run.planned`,
`regulatory.notified`), and the answers' shapes, compared with the fake's so the fake cannot
drift from the service it stands in for (issue #11, items 4 and 7)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import audit
from agent.api.auth import Decision, Policy
from agent.api.client import Client, Routes
from agent.api.http import make_app
from agent.errors import (
    AccessRefused,
    ApprovalError,
    ConfigError,
    CordonError,
    LockError,
    NotFound,
    PlanError,
    PlaybookError,
    RunError,
)
from agent.service.service import Service
from tests.conftest import EXAMPLE, require_root
from tests.daemon.conftest import NoDevices
from tests.daemon.fakes import FakeBackend, Server, records

SITE = "nantes-jules-verne"


@pytest.fixture
def real_as(
    tmp_path: Path, service: Service, policy: Policy, tokens: dict[str, str]
) -> Iterator[Callable[[str], Client]]:
    made: list[Client] = []
    with Server(make_app(service, policy), tmp_path / "sock" / "cordon.sock") as srv:

        def make(user: str) -> Client:
            client = Client(srv.path, token=tokens[user])
            made.append(client)
            return client

        yield make
        for client in made:
            client.close()


def nothing_sent(service: Service) -> None:
    assert service.pool.attempts == []  # type: ignore[attr-defined]
    assert service.journal.runs(limit=10) == []


@pytest.mark.parametrize(
    ("playbook", "words", "line"),
    [
        ("broken", "YAML syntax error", 4),
        ("a-list", "a playbook is a mapping", 1),
        ("nul", "control character U+0000", 2),
        ("logs", "no such playbook file", None),
        ("no-such", "no such playbook file", None),
    ],
)
def test_bad_playbook_sent_to_runs_is_a_clear_error(
    real_as: Callable[[str], Client],
    service: Service,
    audit_log: Path,
    playbook: str,
    words: str,
    line: int | None,
) -> None:
    """POST /v1/runs with a malformed playbook, or one named like the `logs/` folder: exit 2
    with the file, line and cause; nothing journaled or sent (was: HTTP 500 internal error)."""
    with pytest.raises(PlaybookError) as info:
        real_as("bob").run(playbook, digest="d" * 32, sites=[SITE])
    assert info.value.exit_code == 2
    (issue,) = info.value.issues
    assert issue.file == f"playbooks/{playbook}.yaml"
    assert words in issue.message
    assert issue.line == line
    nothing_sent(service)
    (refusal,) = records(audit_log, "access.refused")
    assert refusal["error"] == "PlaybookError"


def test_quoted_false_emergency_is_not_an_emergency(
    real_as: Callable[[str], Client], service: Service, audit_log: Path
) -> None:
    """`emergency: "false"` is read through the validated playbook: on-call alone may not run
    it (was: the raw YAML string counted as true, and break-glass ran it)."""
    assert service.playbook_meta("quoted-false").emergency is False
    alice = real_as("alice")
    plan = alice.plan("quoted-false", sites=[SITE])
    assert plan["emergency"] is False
    with pytest.raises(AccessRefused) as info:
        alice.run("quoted-false", digest=plan["digest"], sites=[SITE], reason="attack nearby")
    assert "emergency playbooks only" in info.value.message
    nothing_sent(service)


def test_run_planned_is_recorded_before_the_run(
    real_as: Callable[[str], Client], service: Service, audit_log: Path
) -> None:
    """A two-person run (held for approval: nothing sent) is recorded `run.planned` with its
    playbook, sites and digest, before `run.started` (the report's "decisions" read it)."""
    bob = real_as("bob")
    plan = bob.plan("hold", sites=[SITE])
    run = bob.run("hold", digest=plan["digest"], sites=[SITE])
    assert run["status"] == "awaiting_approval"
    (planned,) = records(audit_log, "run.planned")
    assert (planned["run_id"], planned["actor"], planned["digest"]) == (
        run["run_id"],
        "bob",
        plan["digest"],
    )
    assert planned["sites"] == [SITE]
    events = [r["event"] for r in records(audit_log) if r.get("run_id") == run["run_id"]]
    assert events.index("run.planned") < events.index("run.started")
    assert service.pool.attempts == []  # type: ignore[attr-defined]


def test_incident_notify_meets_the_regulatory_clock(
    real_as: Callable[[str], Client], service: Service, audit_log: Path
) -> None:
    """`notify` records `regulatory.notified` for the open incident; the incident's report
    then shows that clock met."""
    bob = real_as("bob")
    inc = bob.incident("open", reason="ransomware", site=SITE)
    out = bob.notify(kind="nis2_early_warning", to="ANSSI", ref="CERT-2024-001")
    assert out["incident_id"] == inc["incident_id"]
    (note,) = records(audit_log, "regulatory.notified")
    assert (note["incident_id"], note["kind"], note["to"], note["ref"], note["actor"]) == (
        inc["incident_id"],
        "nis2_early_warning",
        "ANSSI",
        "CERT-2024-001",
        "bob",
    )
    report = real_as("dave").audit_report(incident=inc["incident_id"])
    (incident,) = report["incidents"]
    clocks = {c["kind"]: c["status"] for c in incident["clocks"]}
    assert clocks["nis2_early_warning"] == "met"
    with pytest.raises(AccessRefused):
        real_as("dave").notify(kind="cnil", to="CNIL", ref="x-1")


def test_incident_notify_records_when_and_by_whom_and_refuses_the_future(
    real_as: Callable[[str], Client], audit_log: Path
) -> None:
    """`at` (ISO-8601 with its zone) and `by` are recorded as `notified_at`/`notified_by` and
    the clock is met at `at`; a time in the future, or one without its zone, is refused by
    the service itself (not only the CLI) and nothing is recorded."""
    bob = real_as("bob")
    inc = bob.incident("open", reason="ransomware", site=SITE)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for bad in (future, "2024-10-15T03:00:00"):
        with pytest.raises(ConfigError):
            bob.notify(kind="cnil", to="CNIL", ref="R-1", at=bad)
    assert records(audit_log, "regulatory.notified") == []
    made = (datetime.now(UTC) - timedelta(minutes=20)).isoformat(timespec="seconds")
    out = bob.notify(kind="cnil", to="CNIL", ref="R-2", at=made, by="dpo")
    assert (out["at"], out["by"]) == (made, "dpo")
    (note,) = records(audit_log, "regulatory.notified")
    assert (note["notified_at"], note["notified_by"], note["actor"]) == (made, "dpo", "bob")
    report = real_as("dave").audit_report(incident=inc["incident_id"])
    (clock,) = [c for c in report["incidents"][0]["clocks"] if c["kind"] == "cnil"]
    assert (clock["status"], clock["notified_at"]) == ("met", made)


def test_audit_report_without_selection_is_invalid_input(
    real_as: Callable[[str], Client], audit_log: Path
) -> None:
    """GET /v1/audit/report with no arguments: exit 2 saying what to give (was: HTTP 500)."""
    with pytest.raises(ConfigError) as info:
        real_as("dave").audit_report()
    assert info.value.exit_code == 2
    assert "name a run or an incident" in info.value.message


def test_two_person_rule(
    real_as: Callable[[str], Client], service: Service, audit_log: Path
) -> None:
    """The engine's rule through the API: bob's two-person run waits; bob cannot approve it
    (exit 14, audited); dave and alice may not approve at all (exit 13); carol's approval is
    recorded as hers. Nothing is sent: the run is held, then no scheduler drives it."""
    bob = real_as("bob")
    plan = bob.plan("hold", sites=[SITE])
    run = bob.run("hold", digest=plan["digest"], sites=[SITE])
    assert (run["status"], run["needs_approval"]) == ("awaiting_approval", True)
    rid = run["run_id"]
    with pytest.raises(ApprovalError) as own:
        bob.approve(rid, reason="looks fine")
    assert own.value.exit_code == 14
    assert "cannot approve" in own.value.message
    for user in ("dave", "alice"):
        with pytest.raises(AccessRefused):
            real_as(user).approve(rid)
    assert service.journal.run(rid).status == "awaiting_approval"
    out = real_as("carol").approve(rid, reason="second pair of eyes")
    assert (out["run_id"], out["by"]) == (rid, "carol")
    refusals = [(r["actor"], r["action"], r["error"]) for r in records(audit_log, "access.refused")]
    assert refusals == [
        ("bob", "approve", "ApprovalError"),
        ("dave", "approve", "AccessRefused"),
        ("alice", "approve", "AccessRefused"),
    ]
    (approved,) = records(audit_log, "run.approved")
    assert (approved["actor"], approved["role"], approved["run_id"]) == ("carol", "operator", rid)
    assert service.pool.attempts == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("case", "error", "exit_code", "words", "hint"),
    [
        ("site held by another run", LockError, 5, f"site {SITE} is held by run", "wait for it"),
        ("attest a site the run does not act on", RunError, 4, "does not act on site", None),
        ("approve one's own run", ApprovalError, 14, "cannot approve it", "cordon approve"),
        ("a digest that is not the plan's", PlanError, 3, "the plan changed", "cordon plan"),
        ("an unknown run", NotFound, 2, "no run R9", None),
    ],
)
def test_real_service_errors_keep_type_exit_code_and_hint(
    real_as: Callable[[str], Client],
    service: Service,
    audit_log: Path,
    case: str,
    error: type[CordonError],
    exit_code: int,
    words: str,
    hint: str | None,
) -> None:
    """The errors the real service raises by itself (nothing injected) reach the client with
    their type, exit code, message and hint; no run is made or changed, nothing is sent. (Errors
    only a device or a full disk can cause are injected in tests/daemon/test_api.py.)"""
    zed, bob = real_as("zed"), real_as("bob")
    held = zed.run("hold", digest=zed.plan("hold", sites=[SITE])["digest"], sites=[SITE])
    rid = held["run_id"]
    other = "rennes-la-sagesse"
    request: dict[str, Callable[[], Any]] = {
        "site held by another run": lambda: bob.run(
            "routine", digest=bob.plan("routine", sites=[SITE])["digest"], sites=[SITE]
        ),
        "attest a site the run does not act on": lambda: bob.attest(
            rid, site=other, zone="icu", reason="scanned"
        ),
        "approve one's own run": lambda: zed.approve(rid, reason="mine"),
        "a digest that is not the plan's": lambda: bob.run(
            "routine", digest="0" * 32, sites=[other]
        ),
        "an unknown run": lambda: bob.show("R9"),
    }
    with pytest.raises(CordonError) as info:
        request[case]()
    assert type(info.value) is error
    assert info.value.exit_code == exit_code
    assert words in info.value.message
    if hint is None:
        assert info.value.hint is None
    else:
        assert info.value.hint is not None and hint in info.value.hint
    assert [r.run_id for r in service.journal.runs(limit=10)] == [rid]
    assert service.journal.run(rid).status == "awaiting_approval"
    assert service.pool.attempts == []  # type: ignore[attr-defined]


def _shape(value: Any) -> Any:
    """Keys and value types, nested; a list is the set of its elements' shapes."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return sorted({json.dumps(_shape(v), sort_keys=True) for v in value})
    return type(value).__name__ if value is not None else "null"


def test_fake_backend_answers_like_the_real_service(
    real_as: Callable[[str], Client],
    client_as: Callable[[str], Routes],
    backend: FakeBackend,
    service: Service,
) -> None:
    """The same requests to the fake and to the real service answer the same keys and types,
    nested (run, show, runs, status, approve, attest, rollback, incident open/close, notify; the
    report's top-level keys): the fake used by tests/daemon/test_api.py cannot drift unnoticed
    (it answered `approve`, `incident`, `show` (`by`), `status`, `rollback` and the report in
    shapes of its own)."""
    real_bob, real_carol = real_as("bob"), real_as("carol")
    fake_bob, fake_carol = client_as("bob"), client_as("carol")
    plan = real_bob.plan("hold", sites=[SITE])
    run = real_bob.run("hold", digest=plan["digest"], sites=[SITE])
    fake_plan = fake_bob.plan("hold", sites=[SITE])
    fake_run = fake_bob.run("hold", digest=fake_plan["digest"], sites=[SITE])
    rid, fid = run["run_id"], fake_run["run_id"]
    assert _shape(fake_run) == _shape(run)
    # a run that waits for approval, seen by every read
    assert _shape(fake_bob.show(fid)) == _shape(real_bob.show(rid))
    assert _shape(fake_bob.runs(limit=5)) == _shape(real_bob.runs(limit=5))
    assert _shape(fake_bob.status()) == _shape(real_bob.status())

    real_ok = real_carol.approve(rid, reason="second pair of eyes")
    fake_ok = fake_carol.approve(fid, reason="second pair of eyes")
    assert _shape(fake_ok) == _shape(real_ok)
    real_att = real_carol.attest(rid, site=SITE, zone="icu", reason="scanned clean")
    fake_att = fake_carol.attest(fid, site=SITE, zone="icu", reason="scanned clean")
    assert _shape(fake_att) == _shape(real_att)
    real_back = real_bob.rollback(rid, reason="not needed")
    fake_back = fake_bob.rollback(fid, reason="not needed")
    assert _shape(fake_back) == _shape(real_back)
    assert real_back["status"] == fake_back["status"] == "cancelled"

    for action in ("open", "close"):
        kwargs: dict[str, Any] = {"reason": "r"}
        if action == "open":
            kwargs["site"] = SITE
        real = real_bob.incident(action, **kwargs)
        fake = fake_bob.incident(action, **kwargs)
        assert _shape(fake) == _shape(real), action
    real_bob.incident("open", reason="again", site=SITE)
    fake_bob.incident("open", reason="again", site=SITE)
    real_n = real_bob.notify(kind="cnil", to="CNIL", ref="R-1")
    fake_n = fake_bob.notify(kind="cnil", to="CNIL", ref="R-1")
    assert _shape(fake_n) == _shape(real_n)
    real_rep = real_as("dave").audit_report(run=rid)
    fake_rep = client_as("dave").audit_report(run=fid)
    assert sorted(fake_rep) == sorted(real_rep)
    assert _shape(fake_rep["integrity"]) == _shape(real_rep["integrity"])
    assert service.pool.attempts == []  # type: ignore[attr-defined]


BODY = st.dictionaries(
    st.sampled_from(["playbook", "sites", "digest", "reason", "params", "soak_seconds", "x"]),
    st.one_of(
        st.text(max_size=30),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=10), max_size=3),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        st.sampled_from(["logs", "broken", "a-list", "nul", "quoted-false", "../etc/passwd"]),
    ),
    max_size=5,
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=BODY, route=st.sampled_from(["/v1/runs", "/v1/plan"]))
def test_corpus_of_requests_to_the_real_service(
    tmp_path: Path, service: Service, policy: Policy, body: dict[str, Any], route: str
) -> None:
    """Generated request bodies: a JSON error with a documented exit code (2 invalid input,
    3 plan refused, 13 access refused), never a 500 or a traceback; no run, nothing sent."""
    require_root()  # the peer is root: an operator
    sock = tmp_path / "corpus" / "cordon.sock"
    with (
        Server(make_app(service, policy), sock) as srv,
        httpx.Client(
            transport=httpx.HTTPTransport(uds=str(srv.path)), base_url="http://cordon"
        ) as http,
    ):
        response = http.post(route, content=json.dumps(body).encode())
    assert "Traceback" not in response.text
    if response.status_code != 200:
        error = response.json()["error"]
        assert response.status_code < 500, error
        assert error["exit_code"] in (2, 3, 13), error
    nothing_sent(service)


def test_runs_columns_fit_long_playbook_names(
    tmp_path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cordon runs`: a 40-character playbook name does not run into the actor column."""
    from agent.cli import main  # noqa: PLC0415

    long = "hold-for-a-second-operator-approval-long"
    text = (workdir / "playbooks" / "hold.yaml").read_text(encoding="utf-8")
    (workdir / "playbooks" / f"{long}.yaml").write_text(
        text.replace("name: hold", f"name: {long}"), encoding="utf-8"
    )
    state = tmp_path / "runs-state"
    svc = Service(EXAMPLE, state, scheduler=False)
    svc.pool.close()
    svc.pool = NoDevices()  # type: ignore[assignment]
    try:
        plan = svc.plan(None, playbook=long, sites=[SITE])
        svc.start_run(
            None,
            playbook=long,
            sites=[SITE],
            digest=plan["digest"],
            reason=None,
            attest=None,
            soak_seconds=None,
            decision=Decision(True, False, True, "held for a second operator"),
            params=None,
        )
    finally:
        svc.stop()
    roles = tmp_path / "roles-root.yaml"
    roles.write_text("auditor: [root]\n", encoding="utf-8")
    roles.chmod(0o644)
    argv = sys.argv
    sys.argv = ["cordon", "runs", "--local", "-i", str(EXAMPLE), "--state-dir", str(state)]
    sys.argv += ["--roles", str(roles)]
    try:
        main()
    finally:
        sys.argv = argv
        audit.close()
    out, _ = capsys.readouterr()
    (line,) = [ln for ln in out.splitlines() if long in ln]
    assert f"{long} " in line  # a space between the name and the actor
    assert line.split()[1:4] == ["awaiting_approval", long, "cordon-daemon"]
