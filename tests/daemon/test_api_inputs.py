"""The daemon's inputs and answers (review 7, F6, F8, F10, F11), with real files, real sockets,
real TLS and the real service:

- a client certificate of the roles file that group or others can write is refused as the roles
  file itself is (whoever writes it would act as its user);
- a job store that fails when a run is scheduled: the caller is told the run is journaled but
  not scheduled and what to do (`StateLostError`, exit 27, HTTP 503), not "internal error";
- TLS settings that nothing would use (a certificate with no TCP listener nor a view beyond
  loopback, CORDON_API_ADVERTISE without CORDON_API_LISTEN) are refused at start;
- a standby's redirect carries the client certificate, never the bearer token.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web

from agent import mtls
from agent.api.auth import Policy
from agent.api.client import Client
from agent.api.http import make_app
from agent.api.nodes import ActiveNode, Directory
from agent.api.orders import http_status
from agent.api.tcp import api_listen
from agent.errors import ConfigError, DaemonError, StateLostError
from agent.inventory import load as load_inventory
from agent.service import service as service_module
from agent.service.service import Service
from tests.conftest import EXAMPLE, ROOT
from tests.daemon.conftest import ROLES_YAML, NoDevices, example_inventory
from tests.daemon.fakes import FakeBackend, Server, digest_of
from tests.daemon.test_api_tls import TlsServer, _Directory, _StandbyBackend

SITE = "nantes-jules-verne"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("pki")
    pins = {
        n: mtls.new_identity(d / f"{n}.pem", d / f"{n}.key", n, error=ConfigError)
        for n in ("node-a", "bob")
    }
    for n in pins:
        (d / f"{n}.pem").chmod(0o644)
    return d, pins


def _roles(tmp_path: Path, certs: Path) -> Path:
    path = tmp_path / "roles.yaml"
    path.write_text(ROLES_YAML + f"certificates:\n  bob: {certs / 'bob.pem'}\n", encoding="utf-8")
    path.chmod(0o644)
    return path


# -- F6: certificate files others can write --------------------------------------------------


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_a_certificate_others_can_write_is_refused_as_the_roles_file_is(
    tmp_path: Path, tokens: dict[str, str], mode: int
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    mtls.new_identity(certs / "bob.pem", certs / "bob.key", "bob", error=ConfigError)
    roles = _roles(tmp_path, certs)
    (certs / "bob.pem").chmod(0o644)
    assert Policy.load(roles).certificate_files == (certs / "bob.pem",)
    (certs / "bob.pem").chmod(mode)
    with pytest.raises(ConfigError) as bad:
        Policy.load(roles)
    line = ROLES_YAML.count("\n") + 2  # the certificate's line in the roles file
    assert f"{roles}:{line}" in bad.value.message
    assert f"{certs / 'bob.pem'} has mode {mode:04o}: writable by group or others" in (
        bad.value.message
    )
    assert "act as bob" in bad.value.message


# -- F8: the job store failing at schedule time ------------------------------------------------


@pytest.fixture
def scheduled(
    tmp_path: Path, workdir: Path, audit_log: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Service, Path]]:
    """The real service with its real job store (SQLite, started paused: no job runs), its
    pool reaching no device."""
    monkeypatch.setattr(
        service_module,
        "load_inventory",
        lambda path: example_inventory() if path == EXAMPLE else load_inventory(path),
    )
    jobs_file = tmp_path / "jobs.sqlite"
    svc = Service(EXAMPLE, tmp_path / "svc-state", jobstore_url=f"sqlite:///{jobs_file}")
    svc.pool.close()
    svc.pool = NoDevices()  # type: ignore[assignment]
    assert svc.scheduler is not None
    svc.scheduler.start(paused=True)
    try:
        yield svc, jobs_file
    finally:
        svc.stop()


def test_a_job_store_that_fails_says_the_run_is_journaled_not_scheduled(
    tmp_path: Path, scheduled: tuple[Service, Path], policy: Policy, tokens: dict[str, str]
) -> None:
    service, jobs_file = scheduled
    with sqlite3.connect(jobs_file) as db:  # the job store breaks (as a database gone would)
        db.execute("DROP TABLE apscheduler_jobs")
    with (
        Server(make_app(service, policy), tmp_path / "sock" / "cordon.sock") as srv,
        Client(srv.path, token=tokens["bob"]) as bob,
    ):
        plan = bob.plan("hold", sites=[SITE])
        with pytest.raises(StateLostError) as lost:
            bob.run("hold", digest=plan["digest"], sites=[SITE])
    assert lost.value.exit_code == 27
    [rid] = service.journal.open_runs()
    assert f"run {rid} is journaled (open, its sites locked) but not scheduled" in (
        lost.value.message
    )
    assert f"job store at sqlite:///{jobs_file} failed (OperationalError: no such table" in (
        lost.value.message
    )
    assert "restart the daemon" in (lost.value.hint or "")
    assert "internal error" not in lost.value.message
    assert service.journal.locks() == {SITE: rid}


def test_the_state_database_away_is_a_server_outage_not_a_bad_request() -> None:
    assert http_status(StateLostError("the state database is away")) == 503
    assert http_status(DaemonError("x")) == 400


# -- F10: TLS settings that nothing would use --------------------------------------------------


def test_advertise_without_listen_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tokens: dict[str, str],
    pki: tuple[Path, dict[str, str]],
) -> None:
    policy = Policy.load(_roles(tmp_path, pki[0]))
    monkeypatch.delenv("CORDON_API_LISTEN", raising=False)
    monkeypatch.setenv("CORDON_API_ADVERTISE", "https://cordon-b.example.org:8600")
    with pytest.raises(ConfigError, match="CORDON_API_ADVERTISE is set but CORDON_API_LISTEN"):
        api_listen(policy)
    monkeypatch.delenv("CORDON_API_ADVERTISE")
    assert api_listen(policy) is None
    # a malformed advertised URL is the setting's error too, not a traceback
    monkeypatch.setenv("CORDON_API_ADVERTISE", "https://[::1:8600")
    monkeypatch.setenv("CORDON_API_LISTEN", "127.0.0.1:8600")
    monkeypatch.setenv("CORDON_API_TLS_CERT", str(pki[0] / "node-a.pem"))
    monkeypatch.setenv("CORDON_API_TLS_KEY", f"file:{pki[0] / 'node-a.key'}")
    with pytest.raises(ConfigError, match=r"CORDON_API_ADVERTISE=.* is not https://HOST:PORT"):
        api_listen(policy)


@pytest.mark.parametrize("view", [None, "127.0.0.1:8443"])
def test_a_daemon_certificate_that_nothing_serves_is_refused_at_start(
    tmp_path: Path, pki: tuple[Path, dict[str, str]], view: str | None
) -> None:
    certs, _ = pki
    roles = tmp_path / "roles.yaml"
    roles.write_text(f"operator: [bob]\ncertificates:\n  bob: {certs / 'bob.pem'}\n")
    roles.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_")}
    env |= {
        "CORDON_STATE_DIR": str(tmp_path / "state"),
        "CORDON_LOG_DIR": str(tmp_path / "logs"),
        "CORDON_ROLES": str(roles),
        "CORDON_API_TLS_CERT": str(certs / "node-a.pem"),
        "CORDON_API_TLS_KEY": f"file:{certs / 'node-a.key'}",
        **({"CORDON_VIEW_LISTEN": view} if view else {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "agent", "daemon", "--poll-interval", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CORDON_API_TLS_CERT and CORDON_API_TLS_KEY are set but nothing would be served" in (
        done.stderr
    )
    assert ("is loopback, in plain HTTP" if view else "CORDON_VIEW_LISTEN is unset") in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was made


# -- F11: the redirect carries no token ----------------------------------------------------------


def test_a_redirect_sends_the_certificate_never_the_token(
    tmp_path: Path, pki: tuple[Path, dict[str, str]], tokens: dict[str, str], audit_log: Path
) -> None:
    """The redirect's target is read from the shared state (`cordon_nodes`): what reaches it is
    the client certificate, which identifies over TCP; the bearer token stays with the node the
    user named."""
    certs, pins = pki
    policy = Policy.load(_roles(tmp_path, certs))
    seen: list[str | None] = []

    @web.middleware
    async def headers(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return await handler(request)

    target = FakeBackend()
    app = make_app(target, policy)
    app.middlewares.append(headers)
    ctx = mtls.server_context(
        certs / "node-a.pem",
        certs / "node-a.key",
        policy.certificate_files,
        error=ConfigError,
        what="test",
    )
    with TlsServer(app, ctx) as a:
        there = ActiveNode("node-a", 3, a.url, pins["node-a"])
        standby = _StandbyBackend("node-b", "node node-a (epoch 3)")
        directory = cast(Directory, _Directory("node-b", there))
        with (
            Server(make_app(standby, policy, directory=directory), tmp_path / "b.sock") as b,
            Client(
                b.path, token=tokens["bob"], cert=certs / "bob.pem", key=certs / "bob.key"
            ) as bob,
        ):
            started = bob.run("routine", digest=digest_of("routine"), sites=["rennes-la-sagesse"])
    assert started["status"]
    assert seen == [None]  # the redirected order: no Authorization header at all
    assert [(c.name, c.user, c.via) for c in target.calls] == [("start_run", "bob", "certificate")]
    assert [c.via for c in standby.calls] == ["token"]  # the standby had it: the node named
