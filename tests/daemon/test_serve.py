"""Serving on the Unix socket: modes 0660 and 0750, never over a file or a live daemon, a stale
socket replaced, and `serve` removing its socket when told to stop."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import pytest

from agent.api.auth import Policy
from agent.api.client import Client
from agent.api.http import make_app, serve
from agent.errors import ConfigError, DaemonDown, DaemonError
from tests.daemon.fakes import FakeBackend, Server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_socket_0660_in_a_new_directory_0750(
    tmp_path: Path, backend: FakeBackend, policy: Policy, umask: int
) -> None:
    """Whatever the umask, the group keeps its access and others get none."""
    path = tmp_path / "new" / "state" / "cordon.sock"
    previous = os.umask(umask)
    try:
        with Server(make_app(backend, policy), path):
            assert path.is_socket()
            assert mode(path) == 0o660
            assert mode(path.parent) == 0o750
    finally:
        os.umask(previous)


def test_existing_directory_is_left_as_it_is(
    tmp_path: Path, backend: FakeBackend, policy: Policy
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o711)
    with Server(make_app(backend, policy), state / "cordon.sock"):
        assert mode(state) == 0o711


def test_refuses_a_directory_anyone_may_write(
    tmp_path: Path, backend: FakeBackend, policy: Policy
) -> None:
    """In a world-writable directory (without the sticky bit) anyone could swap the socket."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(DaemonError) as info, Server(make_app(backend, policy), shared / "c.sock"):
        pass
    assert "anyone may write into it" in info.value.message
    assert not (shared / "c.sock").exists()


def test_refuses_to_replace_a_file(tmp_path: Path, backend: FakeBackend, policy: Policy) -> None:
    path = tmp_path / "cordon.sock"
    path.write_text("precious")
    with pytest.raises(DaemonError) as info, Server(make_app(backend, policy), path):
        pass
    assert "exists and is not a socket" in info.value.message
    assert path.read_text() == "precious"


def test_refuses_a_second_daemon_on_a_live_socket(
    tmp_path: Path, backend: FakeBackend, policy: Policy
) -> None:
    path = tmp_path / "cordon.sock"
    with Server(make_app(backend, policy), path):
        with pytest.raises(DaemonError) as info, Server(make_app(backend, policy), path):
            pass
        assert info.value.message == f"a daemon is already listening at {path}"
        with Client(path) as client:
            assert client.health()["ok"] is True  # the first one still serves


def test_replaces_a_stale_socket(tmp_path: Path, backend: FakeBackend, policy: Policy) -> None:
    """A socket left by a daemon that died (nobody listening) is removed and served again."""
    path = tmp_path / "cordon.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    with Server(make_app(backend, policy), path), Client(path) as client:
        assert client.health()["ok"] is True


def test_unknown_group_is_a_config_error(
    tmp_path: Path, backend: FakeBackend, policy: Policy
) -> None:
    with (
        pytest.raises(ConfigError) as info,
        Server(make_app(backend, policy), tmp_path / "c.sock", group="no-such-group-xyz"),
    ):
        pass
    assert info.value.message == "socket group 'no-such-group-xyz' does not exist"


def test_serve_until_stopped_then_removes_the_socket(
    tmp_path: Path, backend: FakeBackend, policy: Policy
) -> None:
    """`serve` answers until its stop event is set, then closes and removes the socket."""
    path = tmp_path / "state" / "cordon.sock"

    async def main() -> dict[str, object]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(make_app(backend, policy), path, stop=stop))
        for _ in range(10_000):  # start() is a few local calls: yield until it has bound
            if path.exists() or task.done():
                break
            await asyncio.sleep(0)
        with Client(path) as client:
            answer = await asyncio.to_thread(client.health)
        stop.set()
        await task
        return answer

    assert asyncio.run(main())["ok"] is True
    assert not path.exists()
    with Client(path) as client, pytest.raises(DaemonDown):
        client.health()
