"""Fixtures for the daemon API tests: an audit log in tmp_path, a roles file with a token per
user, the fake backend, the real service over a pool that reaches no device (with its working
directory of playbooks), a real server on a Unix socket, and clients acting as each user."""

from __future__ import annotations

import functools
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import audit
from agent.api.auth import Policy
from agent.api.backend import Backend
from agent.api.client import Client, Routes
from agent.api.http import make_app
from agent.api.local import LocalClient
from agent.errors import ConnectError
from agent.inventory import load as load_inventory
from agent.inventory.models import Inventory
from agent.service import service as service_module
from agent.service.service import Service
from tests.conftest import EXAMPLE, ROOT, require_root
from tests.daemon.fakes import FakeBackend, Server

# Who is who in the test roles file. root (the test process) is an operator through `root_is`.
USERS = ("alice", "bob", "carol", "dave", "olivia", "zed", "erin")
ROLES_YAML = """\
oncall: [alice, olivia]
operator: [bob, carol, olivia, zed]
auditor: [dave]
root_is: operator
tokens:
  alice: env:CORDON_TEST_TOKEN_ALICE
  bob: env:CORDON_TEST_TOKEN_BOB
  carol: env:CORDON_TEST_TOKEN_CAROL
  dave: env:CORDON_TEST_TOKEN_DAVE
  olivia: env:CORDON_TEST_TOKEN_OLIVIA
  zed: env:CORDON_TEST_TOKEN_ZED
"""
# erin has a token env variable but no entry: her token must match no one.
# zed is the operator the tests use to set a state up (a run that waits, an open incident).


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[Path]:
    """The process-wide audit trail pointed at a fresh directory, closed afterwards."""
    log_dir = tmp_path / "logs"
    audit.configure(log_dir, console=False, seal_interval=0)
    yield log_dir
    audit.close()


# One random token per user for the session: each token read is registered as a secret to
# scrub, and the scrubber's pattern of every secret ever registered is compiled again at each new
# one; fresh tokens per test made every later test slower (seconds each, by the hundredth test).
_TOKENS = {user: f"tok-{user}-{secrets.token_urlsafe(24)}" for user in USERS}


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A random token per user, in the environment variables the roles file names."""
    for user, token in _TOKENS.items():
        monkeypatch.setenv(f"CORDON_TEST_TOKEN_{user.upper()}", token)
    return dict(_TOKENS)


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


@pytest.fixture(params=["http", "local"])
def client_as(
    request: pytest.FixtureRequest,
    server: Server,
    backend: Backend,
    policy: Policy,
    tokens: dict[str, str],
) -> Iterator[Callable[[str], Routes]]:
    """`client_as("bob")`: a client presenting bob's token; `client_as("root")`: no token. Over
    the daemon's socket (`http`), or the same API in this process as `--local` has it (`local`:
    `agent.api.local.LocalClient` over the same backend and policy)."""
    made: list[Client] = []

    def make(user: str) -> Routes:
        if user == "root":
            require_root()
        token = None if user == "root" else tokens[user]
        if request.param == "local":
            return LocalClient(backend, policy, token=token)
        client = Client(server.path, token=token)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


class NoDevices:
    """The pool of a machine with no device: every attempt is counted, then fails."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def session(self, device: str, via: str = "ssh") -> Any:
        self.attempts.append(device)
        raise ConnectError(device, "connect", "no device is reachable in this test")

    def run(self, device: str, fn: Any, via: str = "ssh", wait: float | None = None) -> Any:
        self.attempts.append(device)
        raise ConnectError(device, "connect", "no device is reachable in this test")

    def warm(self, devices: Any, *, via: str = "ssh") -> list[Any]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The daemon's working directory: the shipped playbooks, the ones the API tests name
    (tests.daemon.fakes.PLAYBOOKS, made from preventive-degraded with those flags), a few bad
    ones, and a `logs/` folder (the daemon's audit directory is often there)."""
    work = tmp_path / "work"
    shutil.copytree(ROOT / "playbooks", work / "playbooks")
    (work / "logs").mkdir()
    pb = work / "playbooks"
    (pb / "broken.yaml").write_text("name: broken\nlevel: L2\nsteps: [\n", encoding="utf-8")
    (pb / "a-list.yaml").write_text("- name: x\n", encoding="utf-8")
    (pb / "nul.yaml").write_text('name: nul\ndescription: "a\\0b"\nlevel: L2\n', encoding="utf-8")
    text = (pb / "preventive-degraded.yaml").read_text(encoding="utf-8")
    assert "\nemergency: true\n" in text

    def variant(name: str, flags: str) -> str:
        out = text.replace("name: preventive-degraded", f"name: {name}")
        out = out.replace("\nemergency: true\n", f"\n{flags}")
        (pb / f"{name}.yaml").write_text(out, encoding="utf-8")
        return out

    # preventive-degraded, but not an emergency: `"false"` quoted must read as false
    variant("quoted-false", 'emergency: "false"\n')
    # neither an emergency nor two-person: an operator's ordinary run
    variant("routine", "")
    # a run that waits for a second operator: held, nothing sent
    variant("hold", "approval: two_person\n")
    # an emergency that otherwise waits for a second operator: on call may break the glass
    variant("hold-emergency", "emergency: true\napproval: two_person\n")
    monkeypatch.chdir(work)
    return work


@functools.cache
def example_inventory() -> Inventory:
    """The example inventory, read once per session (about a second of YAML each time)."""
    return load_inventory(EXAMPLE)


@pytest.fixture
def service(
    tmp_path: Path, workdir: Path, audit_log: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    """The real service over the example inventory, no scheduler (nothing proceeds a run by
    itself), its pool replaced by `NoDevices`: any device attempt is counted and fails. A fresh
    journal and health store per test; the inventory, read-only, is read once per session."""
    monkeypatch.setattr(
        service_module,
        "load_inventory",
        lambda path: example_inventory() if path == EXAMPLE else load_inventory(path),
    )
    svc = Service(EXAMPLE, tmp_path / "svc-state", scheduler=False)
    svc.pool.close()
    svc.pool = NoDevices()  # type: ignore[assignment]
    try:
        yield svc
    finally:
        svc.stop()
