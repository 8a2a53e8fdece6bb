"""The fortigate driver's flow decision (`decide_flows`) overlaps its policy lookups, one per
distinct packet, over `LOOKUP_CONNECTIONS` pinned connections: seen on a loopback TLS server of
the test's own (no twin) whose first lookups each wait until that many are in flight at once (a
barrier, not a clock: a client that asks one at a time never gets past it and gets an error).
The answers come back in the queries' order, also when the first is answered last; a failed
lookup fails the whole decision, its error carrying no token; every extra connection checks the
device's pin before it sends one, also when it re-opens one the device closed; a device that
refuses or drops the extra connections still gets every lookup, over the driver's own one; a
connection opened while the driver is closed is not kept."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.drivers import tls
from agent.drivers.base import Target, Timeouts
from agent.errors import CertificateError, CommandRejected, ConnectError
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
    requests: list[bytes] = []  # the certificate of each request's connection, any path
    closing = False  # every answer closes its connection (as a device ending kept-alive ones)
    late: int | None = None  # the port whose lookup is answered once `late_after` others were
    late_after = 0
    answered: list[int] = []  # the lookups' ports in the order their answers were written
    done = threading.Condition(lock)

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if type(self).closing:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        cls = type(self)
        url = urllib.parse.urlsplit(self.path)
        with cls.lock:
            cls.requests.append(cls.cert_of[id(self.request)])
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
                with cls.done:
                    if port == cls.late:
                        cls.late = None
                        if not cls.done.wait_for(
                            lambda: len(cls.answered) >= cls.late_after, timeout=60
                        ):
                            raise TimeoutError
                if port == FAIL_PORT:
                    self.answer(500, {"status": "error", "http_status": 500, "error": -1})
                    return
                result = {"success": True, "policy_id": policy_of(port), "destip": query["dest"]}
                self.answer(200, {"status": "success", "http_status": 200, "results": result})
                with cls.done:
                    cls.answered.append(port)
                    cls.done.notify_all()
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
    admit: int | None = None  # connections past this many are accepted, then closed: `reset`
    reset: bool = False  # closed with a reset (as a refusal), else with a FIN (dropped)
    accepted: int = 0


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
    _Api.requests, _Api.closing, _Api.late, _Api.late_after, _Api.answered = [], False, None, 0, []
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
            state.accepted += 1
            if state.admit is not None and state.accepted > state.admit:
                if state.reset:  # no linger: the close sends a reset
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # the device's connection limit
                continue
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


def test_the_first_lookup_answered_last_still_comes_back_first(
    server: _Server, driver: FortiGateDriver
) -> None:
    ports = [443, 2575, 8080, 22, 5432, 3389, 80, 8443, 25]
    # the first packet's lookup (443) is answered only once the 8 others have been: the order
    # of the answers is the queries' whatever the order the device answers in
    _Api.late, _Api.late_after = ports[0], len(ports) - 1
    queries = _queries(ports)
    got = driver.decide_flows(queries)
    assert _Api.answered[-1] == ports[0] and sorted(_Api.answered) == sorted(ports)
    policies = [policy_of((q.sport if q.reply else q.dport) or 0) for q in queries]
    assert [d.why.split()[1] for d in got] == [str(p) if p else "deny" for p in policies]
    assert got[0].why == "policy 8 (deny)" and got[-1].why == "policy 7 (accept)"


@pytest.mark.parametrize("reset", [False, True], ids=["dropped", "reset"])
def test_extra_connections_the_device_refuses_leave_the_lookups_to_the_driver_s_own(
    server: _Server, driver: FortiGateDriver, reset: bool
) -> None:
    # the device takes one connection (an admin session limit): every later one is closed as
    # soon as it is accepted; the lookups go over the one it took, none is lost
    server.admit, server.reset = 1, reset
    _Api.held = 0
    ports = [443, 2575, 8080, 22, 5432, 3389, 80, 8443, 25]
    queries = _queries(ports)
    got = driver.decide_flows(queries)
    policies = [policy_of((q.sport if q.reply else q.dport) or 0) for q in queries]
    assert [d.why.split()[1] for d in got] == [str(p) if p else "deny" for p in policies]
    assert sorted(int(q["destport"]) for q in _Api.lookups) == sorted(ports)
    assert len(server.handshakes) == 1
    # an extra slot tried at least, each at most once (one refused, those not yet tried stop)
    tried = server.accepted
    assert 2 <= tried <= LOOKUP_CONNECTIONS
    again = driver.decide_flows(queries)  # not asked again in this driver's session
    assert (again, server.accepted) == (got, tried)


def test_an_extra_connection_the_device_closed_reopens_checking_the_pin(
    server: _Server, driver: FortiGateDriver
) -> None:
    _Api.closing = True  # every answer ends its connection
    driver.connect()
    driver._call("GET", "cmdb/firewall/policy", operation="decide", slot=1)
    conn = driver._more[1]
    assert conn.sock is None  # the device closed it: the next request re-opens it
    driver._call("GET", "cmdb/firewall/policy", operation="decide", slot=1)
    assert driver._more[1] is conn and getattr(conn, "handshakes", 0) == 2  # same cert: kept
    server.contexts.reverse()  # the device now presents another certificate
    with pytest.raises(CertificateError):
        driver._call("GET", "cmdb/firewall/policy", operation="decide", slot=1)
    with pytest.raises(CertificateError):  # and before a decision's extra slot takes a key
        driver._open(1)
    assert _Api.requests == [server.der] * 2  # none over the other certificate


def test_a_connection_opened_while_the_driver_closes_is_not_kept(
    server: _Server, driver: FortiGateDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tls.connect
    opened, closed = threading.Event(), threading.Event()
    made: list[tls.PinnedHTTPSConnection] = []
    caught: list[BaseException] = []

    def connect_then_wait(target: Target, timeout: float) -> tls.PinnedHTTPSConnection:
        conn = real(target, timeout)
        made.append(conn)
        opened.set()
        closed.wait(timeout=60)
        return conn

    def extra() -> None:
        try:
            driver._connection(1)
        except ConnectError as exc:
            caught.append(exc)

    driver.connect()
    monkeypatch.setattr(tls, "connect", connect_then_wait)
    t = threading.Thread(target=extra, daemon=True)
    t.start()
    assert opened.wait(timeout=60)  # the extra connection is open, not yet kept
    driver.close()  # as the pool may, from another thread
    closed.set()
    t.join(timeout=60)
    assert not t.is_alive() and len(caught) == 1 and "closed" in str(caught[0])
    assert driver._more == {} and made[0].sock is None  # closed, not kept
    monkeypatch.setattr(tls, "connect", real)
    driver.connect()  # open again: the extra slots are again
    assert driver._connection(1) is driver._more[1]
