"""Pinned HTTPS re-connections (`agent.drivers.tls.PinnedHTTPSConnection`): when the device
closes a kept-alive connection, the handshake http.client makes by itself for the next request
checks the pin again; a certificate changed in between is refused before that request (and its
token) is written. A loopback TLS server of the test's own (no twin)."""

from __future__ import annotations

import dataclasses
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers import tls
from agent.drivers.base import Target
from agent.errors import CertificateError
from agent.inventory import load
from tests.drivers.keys import self_signed

INV = Path(__file__).parents[1] / "platforms" / "fortigate" / "data" / "fortigate-small.yaml"


class _Closing(http.server.BaseHTTPRequestHandler):
    """Answers every GET, then closes the connection (as a device ending a kept-alive one)."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@dataclasses.dataclass
class _Server:
    port: int
    contexts: list[ssl.SSLContext]
    seen: list[str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[_Server, bytes]]:
    first, second = self_signed(tmp_path, "first"), self_signed(tmp_path, "second")
    contexts = []
    for crt, key, _der in (first, second):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        contexts.append(ctx)
    _Closing.seen = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Closing)
    state = _Server(httpd.server_address[1], contexts, _Closing.seen)
    plain = httpd.socket

    def serve() -> None:
        while True:
            try:
                sock, addr = plain.accept()
            except OSError:
                return
            try:
                wrapped = state.contexts[0].wrap_socket(sock, server_side=True)
                httpd.process_request(wrapped, addr)
            except (ssl.SSLError, OSError):
                sock.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield state, first[2]
    finally:
        plain.close()
        t.join(timeout=5)


def _target(port: int, der: bytes) -> Target:
    inv = load(INV)
    base = Target.of(inv, "fg-fw")
    https = base.device.https
    assert https is not None
    device = base.device.model_copy(
        update={
            "management": base.device.management.model_copy(update={"address": "127.0.0.1"}),
            "https": https.model_copy(update={"port": port, "certificate": tls.fingerprint(der)}),
        }
    )
    return dataclasses.replace(base, device=device)


def test_a_reconnection_after_the_device_closed_checks_the_pin_again(
    server: tuple[_Server, bytes],
) -> None:
    srv, der = server
    conn = tls.connect(_target(srv.port, der), 5.0)
    try:
        conn.request("GET", "/one")
        conn.getresponse().read()
        assert conn.sock is None  # the server closed: the next request re-connects
        conn.request("GET", "/two")  # same certificate: http.client re-connects, pin checked
        conn.getresponse().read()
        assert (srv.seen, conn.handshakes) == (["/one", "/two"], 2)
        srv.contexts.reverse()  # the device now presents another certificate
        with pytest.raises(CertificateError):
            conn.request("GET", "/three")
        assert srv.seen == ["/one", "/two"]  # refused before the request was written
    finally:
        conn.close()
