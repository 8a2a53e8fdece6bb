"""Roles, identity and the policy: who may do what, break-glass and the two-person rule decided
purely; the roles file validated with file, path and line; tokens matched, never shown."""

from __future__ import annotations

import itertools
import pwd
from pathlib import Path

import pytest

from agent.api.auth import Action, Caller, Policy, Role, authorize, user_name
from agent.audit.redact import scrub
from agent.errors import AccessRefused, ConfigError
from tests.conftest import ROOT

ALL_ROLE_SETS = [
    frozenset(combo) for n in range(4) for combo in itertools.combinations(list(Role), n)
]
REASONS = (None, "", "   ", "ransomware at la-sagesse")


def caller(*roles: Role, user: str = "alice") -> Caller:
    return Caller(user, 1000, frozenset(roles), "peer")


def expected(
    roles: frozenset[Role], action: Action, emergency: bool, approval: str, reason: str | None
) -> tuple[bool, bool, bool]:
    """The issue's rules, written out independently: (allowed, break_glass, needs_approval)."""
    operator, oncall, auditor = (r in roles for r in (Role.OPERATOR, Role.ONCALL, Role.AUDITOR))
    if action is Action.RUN:
        given = reason is not None and reason.strip() != ""
        # break-glass: one on-call person, an emergency playbook, a reason; an operator who is
        # also on call takes it only to skip a two-person wait
        if oncall and emergency and given and (not operator or approval == "two_person"):
            return True, True, False
        if operator:
            return True, False, approval == "two_person"
        return False, False, False
    allowed: set[Action] = set()
    if operator:
        allowed |= set(Action)
    if oncall:
        allowed |= {Action.STATUS, Action.PLAN, Action.RUNS, Action.SHOW}
    if auditor:
        allowed |= {Action.STATUS, Action.RUNS, Action.SHOW, Action.AUDIT_REPORT}
    return action in allowed, False, False


@pytest.mark.parametrize("roles", ALL_ROLE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
def test_authorize_matches_the_rules_for_every_case(roles: frozenset[Role]) -> None:
    """Every action, playbook flag and reason gives the decision the issue's rules give."""
    who = Caller("alice", 1000, roles, "peer")
    wrong = []
    for action, emergency, approval, reason in itertools.product(
        Action, (False, True), ("none", "two_person"), REASONS
    ):
        d = authorize(
            who,
            action,
            playbook_emergency=emergency,
            playbook_approval=approval,
            reason=reason,
        )
        got = (d.allowed, d.break_glass, d.needs_approval)
        want = expected(roles, action, emergency, approval, reason)
        if got != want or not d.why:
            wrong.append(f"{action} emergency={emergency} {approval} {reason!r}: {got} != {want}")
    assert wrong == []


def test_oncall_break_glass_needs_a_reason_and_says_so() -> None:
    """On-call running an emergency playbook without a reason is refused with a --reason hint."""
    for reason in (None, "", " \t "):
        d = authorize(caller(Role.ONCALL), Action.RUN, playbook_emergency=True, reason=reason)
        assert not d.allowed
        assert "--reason" in d.why
        assert d.hint is not None and "--reason" in d.hint


def test_oncall_break_glass_skips_two_person_and_is_flagged() -> None:
    """On-call alone may run a two-person emergency playbook: flagged, no approval wait."""
    d = authorize(
        caller(Role.ONCALL),
        Action.RUN,
        playbook_emergency=True,
        playbook_approval="two_person",
        reason="ransomware",
    )
    assert (d.allowed, d.break_glass, d.needs_approval) == (True, True, False)
    assert "skipped" in d.why


def test_oncall_cannot_run_a_non_emergency_playbook_even_with_a_reason() -> None:
    """Break-glass is for emergency playbooks only."""
    d = authorize(caller(Role.ONCALL), Action.RUN, playbook_emergency=False, reason="urgent")
    assert not d.allowed
    assert "emergency playbooks only" in d.why


def test_operator_two_person_playbook_waits_for_approval() -> None:
    """An operator's two-person run needs another operator's approval, emergency or not."""
    for emergency in (False, True):
        d = authorize(
            caller(Role.OPERATOR),
            Action.RUN,
            playbook_emergency=emergency,
            playbook_approval="two_person",
            reason="planned",
        )
        assert (d.allowed, d.break_glass, d.needs_approval) == (True, False, True)


def test_auditor_reads_but_never_acts() -> None:
    """The auditor may read status, runs and reports, and nothing else."""
    who = caller(Role.AUDITOR)
    allowed = {a for a in Action if authorize(who, a, playbook_emergency=True, reason="x").allowed}
    assert allowed == {Action.STATUS, Action.RUNS, Action.SHOW, Action.AUDIT_REPORT}


def test_no_role_is_refused_everything_naming_the_user() -> None:
    """A caller absent from the roles file may do nothing; the refusal names them."""
    for action in Action:
        d = authorize(caller(user="mallory"), action, playbook_emergency=True, reason="x")
        assert not d.allowed
        assert d.why == "mallory has no role in the roles file"


# -- the roles file ----------------------------------------------------------------------------


def write(tmp_path: Path, text: str, mode: int = 0o644) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        Policy.load(path)
    return info.value.message


def test_shipped_roles_file_is_valid_and_root_is_operator() -> None:
    """inventory/roles.yaml loads, and uid 0 is an operator through `root_is`."""
    policy = Policy.load(ROOT / "inventory" / "roles.yaml")
    root = policy.identify(0)
    assert (root.user, root.roles, root.via) == ("root", frozenset({Role.OPERATOR}), "peer")


def test_roles_file_errors_name_file_path_and_line(tmp_path: Path) -> None:
    """Unknown keys, bad user names, duplicates and bad roles are each located in the file."""
    path = write(
        tmp_path,
        "oncall: [alice, alice]\noperator: [Bob]\nauditors: [dave]\nroot_is: admin\n",
    )
    message = load_error(path)
    assert message.startswith("invalid roles file: 4 problems")
    assert f"{path}:1: oncall: listed more than once: alice" in message
    assert f"{path}:2: operator[0]: 'Bob' is not a user name" in message
    assert f"{path}:3: auditors: unknown key" in message
    assert f"{path}:4: root_is: Input should be 'oncall', 'operator' or 'auditor'" in message


def test_roles_file_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    """A key given twice is an error, not a silent override."""
    path = write(tmp_path, "operator: [bob]\noperator: [mallory]\n")
    assert f"{path}:2: operator: duplicate key" in load_error(path)


def test_roles_file_refuses_a_secret_written_in_it(tmp_path: Path) -> None:
    """Tokens are references only; a literal token is refused without being echoed."""
    path = write(tmp_path, "operator: [bob]\ntokens:\n  bob: hunter2-literal\n")
    message = load_error(path)
    assert f"{path}:3: tokens.bob: a secret is given by reference only" in message
    assert "hunter2-literal" not in message


def test_roles_file_token_unresolvable_or_roleless_is_an_issue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token whose variable is unset, or for a user with no role, is refused at load."""
    monkeypatch.delenv("CORDON_TEST_UNSET", raising=False)
    monkeypatch.setenv("CORDON_TEST_SET", "s3cr3t-value-for-mallory")
    path = write(
        tmp_path,
        "operator: [bob]\ntokens:\n  bob: env:CORDON_TEST_UNSET\n  mallory: env:CORDON_TEST_SET\n",
    )
    message = load_error(path)
    assert f"{path}:3: tokens.bob: token of bob: environment variable CORDON_TEST_UNSET" in message
    assert f"{path}:4: tokens.mallory: token for mallory, who has no role" in message
    assert "s3cr3t-value-for-mallory" not in message


def test_roles_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    """Anyone who can write the roles file could make themselves operator: refused."""
    path = write(tmp_path, "operator: [bob]\n", mode=0o646)
    assert "writable by group or others" in load_error(path)


@pytest.mark.parametrize(
    ("text", "cause"),
    [("", "roles file is empty"), ("- bob\n", "a roles file is a mapping")],
)
def test_roles_file_empty_or_not_a_mapping(tmp_path: Path, text: str, cause: str) -> None:
    assert cause in load_error(write(tmp_path, text))


def test_roles_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert f"{path}: no such roles file" in load_error(path)


def test_roles_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`CORDON_ROLES` names the roles file when no path is given."""
    path = write(tmp_path, "auditor: [dave]\n")
    monkeypatch.setenv("CORDON_ROLES", str(path))
    assert Policy.load().source == str(path)


# -- identity ----------------------------------------------------------------------------------


@pytest.fixture
def token_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    monkeypatch.setenv("CORDON_TEST_TOKEN_BOB", "tok-bob-0123456789abcdef")
    monkeypatch.setenv("CORDON_TEST_TOKEN_DAVE", "tok-dave-0123456789abcdef")
    (tmp_path / "alice.token").write_text("tok-alice-from-file\n")
    (tmp_path / "alice.token").chmod(0o600)
    return Policy.load(
        write(
            tmp_path,
            "oncall: [alice, root]\noperator: [bob]\nauditor: [dave, nobody]\nroot_is: auditor\n"
            "tokens:\n  bob: env:CORDON_TEST_TOKEN_BOB\n  dave: env:CORDON_TEST_TOKEN_DAVE\n"
            "  alice: file:alice.token\n",
        )
    )


def test_peer_uid_zero_has_roles_listed_for_root_plus_root_is(token_policy: Policy) -> None:
    root = token_policy.identify(0)
    assert root == Caller("root", 0, frozenset({Role.ONCALL, Role.AUDITOR}), "peer")
    assert root.role == "auditor,oncall"


def test_peer_uid_is_the_os_user(token_policy: Policy) -> None:
    """A non-root uid is its passwd name, with that name's roles (root_is does not apply)."""
    nobody = pwd.getpwnam("nobody").pw_uid
    assert token_policy.identify(nobody) == Caller(
        "nobody", nobody, frozenset({Role.AUDITOR}), "peer"
    )


def test_peer_uid_without_passwd_entry_has_no_role(token_policy: Policy) -> None:
    uid = 4_000_000_123
    while True:  # a uid with no passwd entry (almost surely the first)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            break
        uid += 1
    who = token_policy.identify(uid)
    assert (who.user, who.roles) == (f"uid-{uid}", frozenset())
    assert user_name(uid) == f"uid-{uid}"


def test_token_identifies_its_user_over_the_peer(token_policy: Policy) -> None:
    """A token (env or file reference) stands for its user, whoever connects with it."""
    bob = token_policy.identify(0, "tok-bob-0123456789abcdef")
    assert bob == Caller("bob", 0, frozenset({Role.OPERATOR}), "token")
    alice = token_policy.identify(1234, "tok-alice-from-file")
    assert (alice.user, alice.uid, alice.roles) == ("alice", 1234, frozenset({Role.ONCALL}))


@pytest.mark.parametrize(
    "token",
    ["tok-bob-0123456789abcdeX", "tok-bob-0123456789abcdef ", "", "tok-bob", "x" * 1000],
)
def test_wrong_token_is_refused_not_ignored(token_policy: Policy, token: str) -> None:
    """A token matching no one is refused (never a fallback to the peer); it is not echoed."""
    with pytest.raises(AccessRefused) as info:
        token_policy.identify(0, token)
    assert "matches no operator" in info.value.message
    if token:
        assert token not in info.value.message
        assert token not in (info.value.hint or "")


def test_tokens_are_scrubbed_and_not_in_repr(token_policy: Policy) -> None:
    """Resolved tokens are registered with the audit scrubber and absent from the repr."""
    for secret in ("tok-bob-0123456789abcdef", "tok-alice-from-file"):
        assert secret not in scrub(f"header was Bearer {secret}")
        assert secret not in repr(token_policy)
    assert "bob" in repr(token_policy)


def test_roles_file_refuses_a_short_token(
    monkeypatch: pytest.MonkeyPatch, roles_file: Path
) -> None:
    """A guessable token (and one the scrubber would mask inside ordinary words) is refused."""
    # resolving registers the value with the audit scrubber for the whole process: a value that
    # appears in no ordinary text, or every later log line would be mangled
    monkeypatch.setenv("CORDON_TEST_TOKEN_BOB", "Qz9~kX")
    with pytest.raises(ConfigError, match="token of bob is shorter than 16 characters"):
        Policy.load(roles_file)
