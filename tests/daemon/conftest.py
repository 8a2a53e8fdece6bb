"""Fixtures for the daemon API tests: an audit log in tmp_path, a roles file with a token per
user, the fake backend, a real server on a Unix socket, and clients acting as each user."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import audit
from agent.daemon.api import make_app
from agent.daemon.auth import Policy
from agent.daemon.client import Client
from tests.conftest import require_root
from tests.daemon.fakes import FakeBackend, Server

# Who is who in the test roles file. root (the test process) is an operator through `root_is`.
USERS = ("alice", "bob", "carol", "dave", "olivia", "erin")
ROLES_YAML = """\
oncall: [alice, olivia]
operator: [bob, carol, olivia]
auditor: [dave]
root_is: operator
tokens:
  alice: env:CORDON_TEST_TOKEN_ALICE
  bob: env:CORDON_TEST_TOKEN_BOB
  carol: env:CORDON_TEST_TOKEN_CAROL
  dave: env:CORDON_TEST_TOKEN_DAVE
  olivia: env:CORDON_TEST_TOKEN_OLIVIA
"""
# erin has a token env variable but no entry: her token must match no one.


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[Path]:
    """The process-wide audit trail pointed at a fresh directory, closed afterwards."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    yield log_dir
    audit.close()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh random token per user, in the environment variables the roles file names."""
    out = {}
    for user in USERS:
        out[user] = f"tok-{user}-{secrets.token_urlsafe(24)}"
        monkeypatch.setenv(f"CORDON_TEST_TOKEN_{user.upper()}", out[user])
    return out


@pytest.fixture
def roles_file(tmp_path: Path, tokens: dict[str, str]) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(ROLES_YAML, encoding="utf-8")
    path.chmod(0o644)
    return path


@pytest.fixture
def policy(roles_file: Path) -> Policy:
    return Policy.load(roles_file)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(
    tmp_path: Path, backend: FakeBackend, policy: Policy, audit_log: Path
) -> Iterator[Server]:
    with Server(make_app(backend, policy), tmp_path / "state" / "cordon.sock") as srv:
        yield srv


@pytest.fixture
def client_as(server: Server, tokens: dict[str, str]) -> Iterator[Callable[[str], Client]]:
    """`client_as("bob")`: a client presenting bob's token; `client_as("root")`: no token."""
    made: list[Client] = []

    def make(user: str) -> Client:
        if user == "root":
            require_root()
        client = Client(server.path, token=None if user == "root" else tokens[user])
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
