"""The fortigate driver's flow decision (`decide_flows`) overlaps its policy lookups, one per
distinct packet, over `LOOKUP_CONNECTIONS` pinned connections: seen on a loopback TLS server of
the test's own (no twin) whose first lookups each wait until that many are in flight at once (a
barrier, not a clock: a client that asks one at a time never gets past it and gets an error).
The answers come back in the queries' order; a failed lookup fails the whole decision, its
error carrying no token; every extra connection checks the device's pin before it sends one."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import tls
from agent.drivers.base import Target, Timeouts
from agent.errors import CertificateError, CommandRejected
from agent.inventory import load
from agent.platforms.capabilities import FlowQuery, Verdict
from agent.platforms.fortigate.driver import LOOKUP_CONNECTIONS, FortiGateDriver
from tests.drivers.keys import self_signed, write_secret

INV = Path(__file__).parent / "data" / "fortigate-small.yaml"
TOKEN = "s3cr3t-t0ken-for-the-test"  # a throw-away value
FAIL_PORT = 666  # the lookup of this destination port answers HTTP 500
POLICIES = [
    {"policyid": 7, "action": "accept", "status": "enable"},
    {"policyid": 8, "action": "deny", "status": "enable"},
]


def policy_of(port: int) -> int:
    """The policy the test's FortiGate says a packet to `port` hits: 0 (implicit deny), 7 or 8."""
    return (0, 7, 8)[port % 3]


class _Api(BaseHTTPRequestHandler):
    """The policy table and policy lookups of a FortiOS REST API. The first `held` lookups
    each wait for `hold` (a barrier or an event, 60 s at most) before they are answered."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    hold: Callable[[], object]
    held = 0
    lock = threading.Lock()
    lookups: list[dict[str, str]] = []
    cert_of: dict[int, bytes] = {}  # id of a connection's socket -> the certificate it showed
    certs: list[bytes] = []  # the certificate of each lookup's connection
    in_flight = 0
    peak = 0

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        cls = type(self)
        url = urllib.parse.urlsplit(self.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.answer(401, {"status": "error", "http_status": 401})
        elif url.path == "/api/v2/cmdb/firewall/policy":
            self.answer(200, {"status": "success", "http_status": 200, "results": POLICIES})
        elif url.path == "/api/v2/monitor/firewall/policy-lookup":
            query = dict(urllib.parse.parse_qsl(url.query))
            with cls.lock:
                cls.lookups.append(query)
                cls.certs.append(cls.cert_of[id(self.request)])
                first = len(cls.lookups) <= cls.held
                cls.in_flight += 1
                cls.peak = max(cls.peak, cls.in_flight)
            try:
                if first:
                    cls.hold()
                port = int(query["destport"])
                if port == FAIL_PORT:
                    self.answer(500, {"status": "error", "http_status": 500, "error": -1})
                    return
                result = {"success": True, "policy_id": policy_of(port), "destip": query["dest"]}
                self.answer(200, {"status": "success", "http_status": 200, "results": result})
            except (threading.BrokenBarrierError, TimeoutError):
                self.answer(503, {"status": "error", "http_status": 503, "error": -2})
            finally:
                with cls.lock:
                    cls.in_flight -= 1
        else:
            self.answer(404, {"status": "error", "http_status": 404})


@dataclasses.dataclass
class _Server:
    port: int
    der: bytes  # the certificate the device's pin names
    contexts: list[ssl.SSLContext]  # [0]: the one new connections get
    handshakes: list[bytes]  # the certificate of each connection accepted
    other: threading.Event  # set at the first connection accepted to get the unpinned one


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    certs = [self_signed(tmp_path, "pinned"), self_signed(tmp_path, "other")]
    contexts = []
    for crt, key, _der in certs:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        contexts.append(ctx)
    gate = threading.Barrier(LOOKUP_CONNECTIONS)
    _Api.hold, _Api.held = lambda: gate.wait(timeout=60), LOOKUP_CONNECTIONS
    _Api.lookups, _Api.certs, _Api.cert_of, _Api.in_flight, _Api.peak = [], [], {}, 0, 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    httpd.daemon_threads = True
    state = _Server(httpd.server_address[1], certs[0][2], contexts, [], threading.Event())
    plain = httpd.socket
    ders = {id(contexts[0]): certs[0][2], id(contexts[1]): certs[1][2]}
    unpinned = contexts[1]

    def serve() -> None:
        while True:
            try:
                sock, addr = plain.accept()
            except OSError:
                return
            ctx = state.contexts[0]
            if ctx is unpinned:
                state.other.set()
            try:
                wrapped = ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                sock.close()
                continue
            state.handshakes.append(ders[id(ctx)])
            _Api.cert_of[id(wrapped)] = ders[id(ctx)]
            httpd.process_request(wrapped, addr)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield state
    finally:
        gate.abort()
        plain.shutdown(socket.SHUT_RDWR)  # wakes the accept
        plain.close()
        t.join(timeout=60)


@pytest.fixture
def driver(server: _Server, tmp_path: Path) -> Iterator[FortiGateDriver]:
    secret = write_secret(tmp_path / "token", TOKEN)
    base = Target.of(load(INV), "fg-fw")
    https = base.device.https
    assert https is not None
    device = base.device.model_copy(
        update={
            "management": base.device.management.model_copy(update={"address": "127.0.0.1"}),
            "https": https.model_copy(
                update={
                    "port": server.port,
                    "certificate": tls.fingerprint(server.der),
                    "token": f"file:{secret}",
                }
            ),
        }
    )
    # the server holds answers for as long as its waits: the driver's bounds are not what is
    # tested here
    drv = FortiGateDriver(dataclasses.replace(base, device=device), Timeouts(connect=90.0))
    try:
        yield drv
    finally:
        drv.close()


def _queries(ports: list[int]) -> list[FlowQuery]:
    """A request to each port and, for every other one, its reply (decided by its request's
    lookup: no lookup of its own)."""
    out = []
    for i, port in enumerate(ports):
        src, dst = f"198.18.1.{10 + i}", "198.18.2.10"
        out.append(FlowQuery("port2", "port3", src, dst, None, port))
        if i % 2:
            out.append(FlowQuery("port3", "port2", dst, src, port, None, reply=True))
    return out


def test_the_lookups_overlap_and_come_back_in_the_queries_order(
    server: _Server, driver: FortiGateDriver
) -> None:
    ports = [443, 2575, 8080, 22, 5432, 3389, 80, 8443, 25]  # 9 distinct packets
    queries = _queries(ports)
    got = driver.decide_flows(queries)
    policies = [policy_of((q.sport if q.reply else q.dport) or 0) for q in queries]
    want = {0: Verdict.DROP, 7: Verdict.ACCEPT, 8: Verdict.DROP}
    assert [d.verdict for d in got] == [want[p] for p in policies]
    assert [d.why.split()[1] for d in got] == [str(p) if p else "deny" for p in policies]
    assert sorted(int(q["destport"]) for q in _Api.lookups) == sorted(ports)  # once each
    assert _Api.peak == LOOKUP_CONNECTIONS  # as many in flight as connections, never more
    assert len(server.handshakes) == LOOKUP_CONNECTIONS
    again = driver.decide_flows(queries)  # the connections are kept: no handshake more
    assert (again, len(server.handshakes)) == (got, LOOKUP_CONNECTIONS)


def test_a_failed_lookup_fails_the_whole_decision(server: _Server, driver: FortiGateDriver) -> None:
    ports = [443, FAIL_PORT, 8080, 22, 5432, 3389]
    with pytest.raises(CommandRejected) as caught:
        driver.decide_flows(_queries(ports))
    # the lookup that failed is the one to 666 (answered once all four were in flight), not
    # one cut short
    assert "policy-lookup" in caught.value.message and "HTTP 500" in caught.value.message
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.__dict__)


def _seen_other(server: _Server) -> None:
    if not server.other.wait(timeout=60):
        raise TimeoutError


def test_every_lookup_connection_checks_the_pin_before_sending(
    server: _Server, driver: FortiGateDriver
) -> None:
    driver.connect()  # the driver's own connection, on the pinned certificate
    server.contexts.reverse()  # the "device" now presents another certificate to new ones
    # the first lookup, on the driver's own connection if it takes one, is answered once
    # another connection was accepted (to meet the other certificate): the driver's own
    # connection cannot answer every lookup before another one is tried
    _Api.hold, _Api.held = lambda: _seen_other(server), 1
    with pytest.raises(CertificateError):
        driver.decide_flows(_queries([443, 2575, 8080, 22, 5432]))
    # every lookup the server got (and so every token) came over the pinned certificate, none
    # over a connection the driver had not checked
    assert set(_Api.certs) <= {server.der}
