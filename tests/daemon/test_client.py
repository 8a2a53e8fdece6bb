"""The CLI's client: a daemon that is not there is `DaemonDown` with the way out; the daemon's
JSON errors come back as the same error types; requests carry only what was given."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.api.client import DOWN_HINT, Client
from agent.errors import (
    AccessRefused,
    CommandRejected,
    ConfigError,
    DaemonDown,
    DaemonError,
    InventoryError,
    LockError,
    NotFound,
)
from tests.conftest import require_root
from tests.daemon.fakes import Server


def test_no_socket_is_daemon_down(tmp_path: Path) -> None:
    """No socket file: DaemonDown (exit 12) saying where, and how to go on without it."""
    path = tmp_path / "state" / "cordon.sock"
    with Client(path) as client, pytest.raises(DaemonDown) as info:
        client.status()
    assert info.value.message == f"the daemon is not running at {path}"
    assert info.value.hint == DOWN_HINT
    assert "--local" in DOWN_HINT and "cordon daemon" in DOWN_HINT
    assert info.value.exit_code == 12


def test_stale_socket_is_daemon_down(tmp_path: Path) -> None:
    """A socket file nobody listens on (a daemon that died): connection refused, DaemonDown."""
    path = tmp_path / "cordon.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    assert path.is_socket()
    with Client(path) as client, pytest.raises(DaemonDown):
        client.health()


def test_path_under_a_file_is_daemon_down(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with Client(tmp_path / "state" / "cordon.sock") as client, pytest.raises(DaemonDown):
        client.runs()


def test_default_path_follows_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORDON_STATE_DIR", str(tmp_path / "st"))
    with Client() as client, pytest.raises(DaemonDown) as info:
        client.status()
    assert client.path == tmp_path / "st" / "cordon.sock"
    assert str(tmp_path / "st" / "cordon.sock") in info.value.message


# -- against a scripted transport --------------------------------------------------------------

Seen = list[httpx.Request]


def scripted(
    respond: Callable[[httpx.Request], httpx.Response], *, token: str | None = None
) -> tuple[Client, Seen]:
    seen: Seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return respond(request)

    return Client("/nonexistent.sock", token=token, transport=httpx.MockTransport(handler)), seen


def error(status: int, **info: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _req: httpx.Response(status, json={"error": info})


def test_requests_carry_only_what_was_given() -> None:
    """None-valued options are left out of bodies and queries; ids are one quoted segment."""
    client, seen = scripted(lambda _req: httpx.Response(200, json={"ok": True}))
    client.run("segment", digest="sha256-x")
    client.run(
        "isolate-site",
        digest="d",
        sites=["st-malo"],
        reason="attack",
        attest={"icu": "clean"},
        soak_seconds=0,
    )
    client.runs()
    client.runs(limit=3)
    client.approve("R1/../x")
    client.incident("close", reason="contained", name="INC1")
    client.audit_report(incident="INC1")
    got = [(r.method, str(r.url), json.loads(r.content) if r.content else None) for r in seen]
    assert got == [
        ("POST", "http://cordon/v1/runs", {"playbook": "segment", "digest": "sha256-x"}),
        (
            "POST",
            "http://cordon/v1/runs",
            {
                "playbook": "isolate-site",
                "sites": ["st-malo"],
                "digest": "d",
                "reason": "attack",
                "attest": {"icu": "clean"},
                "soak_seconds": 0,
            },
        ),
        ("GET", "http://cordon/v1/runs", None),
        ("GET", "http://cordon/v1/runs?limit=3", None),
        ("POST", "http://cordon/v1/runs/R1%2F..%2Fx/approve", {}),
        (
            "POST",
            "http://cordon/v1/incidents",
            {"action": "close", "name": "INC1", "reason": "contained"},
        ),
        ("GET", "http://cordon/v1/audit/report?incident=INC1", None),
    ]
    assert all("authorization" not in r.headers for r in seen)


def test_token_is_sent_as_bearer_and_not_in_repr() -> None:
    client, seen = scripted(lambda _req: httpx.Response(200, json={}), token="tok-s3cr3t")
    client.status()
    assert seen[0].headers["authorization"] == "Bearer tok-s3cr3t"
    assert "tok-s3cr3t" not in repr(client)


def test_error_body_becomes_the_same_error_type() -> None:
    """Type, message, hint and exit code survive the trip."""
    client, _ = scripted(
        error(409, type="LockError", message="site st-malo held by R7", hint="wait", exit_code=5)
    )
    with pytest.raises(LockError) as info:
        client.status()
    assert (info.value.message, info.value.hint, info.value.exit_code) == (
        "site st-malo held by R7",
        "wait",
        5,
    )


def test_input_file_errors_keep_their_issues() -> None:
    issue = {"file": "inv.yaml", "path": "sites[0].name", "line": 4, "message": "bad name"}
    client, _ = scripted(
        error(422, type="InventoryError", message="invalid inventory", exit_code=2, issues=[issue])
    )
    with pytest.raises(InventoryError) as info:
        client.status()
    assert [str(i) for i in info.value.issues] == ["inv.yaml:4: sites[0].name: bad name"]


def test_device_error_subclass_with_its_own_constructor() -> None:
    """A CommandRejected (device, operation, command, output) is rebuilt from its fields."""
    client, _ = scripted(
        error(
            502,
            type="CommandRejected",
            message="sw1: apply: command 'shutdown' rejected: % Invalid",
            exit_code=6,
            device="sw1",
            operation="apply",
        )
    )
    with pytest.raises(CommandRejected) as info:
        client.status()
    assert (info.value.device, info.value.operation, info.value.exit_code) == ("sw1", "apply", 6)


def test_not_found_is_known_to_the_client() -> None:
    client, _ = scripted(error(404, type="NotFound", message="no run R9", exit_code=2))
    with pytest.raises(NotFound) as info:
        client.show("R9")
    assert isinstance(info.value, ConfigError)


def test_unknown_error_type_keeps_message_and_exit_code() -> None:
    """An error type this client does not know (a newer daemon) is a DaemonError, same code."""
    client, _ = scripted(error(409, type="SoakError", message="soak failed", exit_code=15))
    with pytest.raises(DaemonError) as info:
        client.status()
    assert type(info.value) is DaemonError
    assert (info.value.message, info.value.exit_code) == ("soak failed", 15)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(500, json={"detail": "oops"}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(400, json={"error": {"message": "no type"}}),
    ],
    ids=["html", "no-error-member", "list", "incomplete"],
)
def test_unreadable_answer_is_a_daemon_error(response: httpx.Response) -> None:
    client, _ = scripted(lambda _req: response)
    with pytest.raises(DaemonError) as info:
        client.status()
    assert "without a readable body" in info.value.message
    assert info.value.exit_code == 11


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (httpx.ReadTimeout("timed out"), DaemonError, "did not answer within 300 s"),
        (httpx.RemoteProtocolError("closed"), DaemonError, "lost the connection"),
        (httpx.ConnectError("refused"), DaemonDown, "not running"),
    ],
    ids=["timeout", "closed", "connect"],
)
def test_transport_failures(exc: Exception, kind: type[DaemonError], words: str) -> None:
    def fail(_req: httpx.Request) -> httpx.Response:
        raise exc

    client, _ = scripted(fail)
    with pytest.raises(kind) as info:
        client.status()
    assert type(info.value) is kind
    assert words in info.value.message


def test_permission_denied_is_access_refused() -> None:
    """A socket the user may not open: AccessRefused naming the socket, not DaemonDown."""

    def fail(_req: httpx.Request) -> httpx.Response:
        try:
            raise PermissionError(13, "Permission denied")
        except PermissionError as err:
            raise httpx.ConnectError("denied") from err

    client, _ = scripted(fail)
    with pytest.raises(AccessRefused) as info:
        client.status()
    assert (
        info.value.message == "cannot connect to the daemon at /nonexistent.sock: permission denied"
    )


def test_real_server_round_trip(server: Server) -> None:
    """The client and server agree on every route's shape (root is an operator here)."""
    require_root()
    with Client(server.path) as client:
        site = "nantes-jules-verne"  # the fake answers as the real service (test_api_real.py)
        plan = client.plan("routine", sites=[site])
        run = client.run("routine", digest=plan["digest"], sites=[site])
        assert client.show(run["run_id"])["actor"] == "root"
        assert [r["run_id"] for r in client.runs(limit=1)["runs"]] == [run["run_id"]]
        assert client.attest(run["run_id"], site=site, zone="icu", reason="clean")["zone"]
        assert client.rollback(run["run_id"])["status"] == "cancelled"
        assert client.incident("open", reason="ransomware", site=site)["status"] == "open"
        assert client.audit_report(run=run["run_id"])["selection"] == f"run {run['run_id']}"
