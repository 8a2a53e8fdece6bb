"""The fortigate twin's REST API without a twin (no namespace, no nftables): a client that never
sends its ClientHello is let go (its handler thread and socket freed), and a policy lookup,
which asks the kernel's route outside the device's lock, answers from a route and tables of one
moment when a change is made in between."""

from __future__ import annotations

import socket
import ssl
import threading
import types
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from agent.platforms.fortigate import twin_api
from tests.drivers.keys import self_signed

QUERY = {
    "srcintf": "port2",
    "sourceip": "198.18.1.10",
    "dest": "198.18.2.10",
    "protocol": "tcp",
    "destport": "443",
}


def test_a_client_that_never_says_hello_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crt, key, _der = self_signed(tmp_path, "twin")
    monkeypatch.setattr(twin_api.Handler, "handshake_timeout", 0.5)
    server = ThreadingHTTPServer(("127.0.0.1", 0), twin_api.Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=60) as c:
            # nothing sent: the twin closes the connection (without the handshake's bound, no
            # end: this read's 60 s run out, TimeoutError)
            assert c.recv(1) == b""
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=60)


def _policy(pid: int, out: str) -> dict[str, Any]:
    any_ = [{"name": "all"}]
    return {
        "policyid": pid,
        "srcintf": [{"name": "port2"}],
        "dstintf": [{"name": out}],
        "srcaddr": any_,
        "dstaddr": any_,
        "service": [{"name": "ALL"}],
        "action": "accept",
        "status": "enable",
    }


class _Kernel:
    """A device whose route to the destination and policy table change together, in a write
    made (as the API's writes are) under the device's lock, counted in its `version`."""

    def __init__(self, writes: int) -> None:
        self.dev = types.SimpleNamespace(
            lock=threading.RLock(),
            version=0,
            running={"policy": [_policy(1, "port4")], "address": [], "service": []},
        )
        self.route = "port4"
        self.writes, self.asked = writes, 0

    def write(self) -> None:
        with self.dev.lock:
            n = self.dev.version + 1
            self.route = "port3" if n % 2 else "port4"
            self.dev.running["policy"] = [_policy(n + 1, self.route)]
            self.dev.version = n

    def route_of(self, dest: str) -> str:
        """The route as read, then a write (while the lookup is outside the lock)."""
        assert dest == QUERY["dest"]
        self.asked += 1
        seen = self.route
        if self.writes:
            self.writes -= 1
            self.write()
        return seen


def test_a_change_during_the_route_lookup_makes_the_lookup_ask_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = _Kernel(writes=1)
    monkeypatch.setattr(twin_api, "route_of", kernel.route_of)
    got = twin_api.policy_lookup(cast(twin_api.Device, kernel.dev), QUERY)
    # asked again after the write: the route (port3) and the table (policy 2, to port3) of
    # after it; a route of before with the table of after would find no policy (0)
    assert (got["policy_id"], kernel.asked) == (2, 2)


def test_changes_that_never_stop_end_in_a_lookup_under_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = _Kernel(writes=twin_api.LOOKUP_TRIES + 1)
    monkeypatch.setattr(twin_api, "route_of", kernel.route_of)
    got = twin_api.policy_lookup(cast(twin_api.Device, kernel.dev), QUERY)
    assert kernel.asked == twin_api.LOOKUP_TRIES + 1
    # the last one's tables and route read before that round's write: one moment's
    assert got["policy_id"] == twin_api.LOOKUP_TRIES + 1
