"""The daemon's API over TCP with TLS and client certificates (`agent.api.tcp`, `agent.mtls`):
real sockets on 127.0.0.1, real TLS (the standard library's ssl, real certificates made by
`cordon api keygen`'s code), the real API application and client.

- A client certificate listed in the roles file acts as its user, with that user's roles
  (bob operator runs, dave auditor reads and is refused a run, audited via "certificate").
- No client certificate, or one the roles file does not list: no TLS session, nothing reaches
  the backend. A token alone never identifies over TCP; a token of another user is refused.
- A server whose certificate is not the pinned one: the client stops before sending anything.
- A standby's refusal carries the active node's address; the client sends the order there once
  (never twice: a second standby's answer is the error, exit 25), and says so in `notes`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from agent import mtls, settings
from agent.api.auth import Caller, Decision, Policy
from agent.api.client import Client
from agent.api.handshake import RECORDED_PER_WINDOW, WINDOW_S, RefusalLog
from agent.api.http import make_app
from agent.api.nodes import ActiveNode, Directory
from agent.api.tcp import api_listen, server_tls, start_tcp
from agent.errors import AccessRefused, ConfigError, DaemonError, StandbyError
from agent.view.server import listen_address, start_view
from agent.wire import JSON
from tests.daemon.conftest import ROLES_YAML
from tests.daemon.fakes import FakeBackend, Server, digest_of, records

PEOPLE = ("bob", "dave", "alice", "stranger")


@dataclass
class Pki:
    dir: Path
    pins: dict[str, str]

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    pins = {
        n: mtls.new_identity(d / f"{n}.pem", d / f"{n}.key", n, error=ConfigError)
        for n in ("node-a", "node-b", *PEOPLE)
    }
    return Pki(d, pins)


@pytest.fixture
def tls_policy(tmp_path: Path, pki: Pki, tokens: dict[str, str]) -> Policy:
    path = tmp_path / "roles.yaml"
    path.write_text(
        ROLES_YAML
        + "certificates:\n"
        + f"  bob: {pki.cert('bob')}\n"
        + f"  dave: [{pki.cert('dave')}]\n"
        + f"  alice: {pki.cert('alice')}\n",
        encoding="utf-8",
    )
    path.chmod(0o644)
    return Policy.load(path)


def _server_context(pki: Pki, policy: Policy, node: str = "node-a") -> ssl.SSLContext:
    return mtls.server_context(
        pki.cert(node), pki.key(node), policy.certificate_files, error=ConfigError, what="test"
    )


class TlsServer:
    """A real aiohttp app served by `start_tcp` on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, app: web.Application, ctx: ssl.SSLContext) -> None:
        self.app, self.ctx = app, ctx
        with socket.socket() as s:  # a free port on loopback
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = await start_tcp(self.app, "127.0.0.1", self.port, self.ctx, var="test")
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> TlsServer:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def tls_server(
    pki: Pki, tls_policy: Policy, backend: FakeBackend, audit_log: Path
) -> Iterator[TlsServer]:
    with TlsServer(make_app(backend, tls_policy), _server_context(pki, tls_policy)) as srv:
        yield srv


def _as(srv: TlsServer, pki: Pki, user: str, **kw: Any) -> Client:
    return Client(
        url=srv.url,
        pin=kw.pop("pin", pki.pins["node-a"]),
        cert=pki.cert(user),
        key=pki.key(user),
        **kw,
    )


def _start(client: Client, playbook: str = "routine") -> JSON:
    return client.run(playbook, digest=digest_of(playbook), sites=["rennes-la-sagesse"])


def test_client_certificates_map_to_the_roles_file_users_and_roles(
    tls_server: TlsServer, pki: Pki, backend: FakeBackend, audit_log: Path
) -> None:
    with _as(tls_server, pki, "bob") as bob:
        assert _start(bob)["status"]
    with _as(tls_server, pki, "dave") as dave:
        assert "sites" in dave.status()
        with pytest.raises(AccessRefused) as refused:
            _start(dave)
    assert refused.value.exit_code == 13
    assert [(c.name, c.user, c.via) for c in backend.calls] == [
        ("start_run", "bob", "certificate"),
        ("status", "dave", "certificate"),
    ]
    [audited] = records(audit_log, "access.refused")
    assert (audited["actor"], audited["via"], audited["action"]) == ("dave", "certificate", "run")


def test_on_call_by_certificate_keeps_the_break_glass_rule(
    tls_server: TlsServer, pki: Pki, backend: FakeBackend
) -> None:
    with _as(tls_server, pki, "alice") as alice:
        with pytest.raises(AccessRefused, match="emergency playbooks only"):
            _start(alice, "routine")
        started = alice.run(
            "preventive-degraded",
            digest=digest_of("preventive-degraded"),
            sites=["rennes-la-sagesse"],
            reason="ransomware on the ICU VLAN",
        )
    assert started["status"]
    assert [(c.user, c.args["break_glass"]) for c in backend.calls] == [("alice", True)]


def _raw_handshake(srv: TlsServer, cert: Path | None, key: Path | None) -> bytes:
    """Connect with the standard library alone, send a request, read what comes back."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = tls.recv(65536)
    if got == b"":  # TLS 1.3: the server's refusal may read as a closed connection
        raise ConnectionResetError("closed without an answer")
    return got


@pytest.mark.parametrize("who", ["none", "stranger"])
def test_absent_or_unlisted_client_certificate_gets_no_session(
    tls_server: TlsServer, pki: Pki, backend: FakeBackend, who: str
) -> None:
    cert = None if who == "none" else pki.cert(who)
    key = None if who == "none" else pki.key(who)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _raw_handshake(tls_server, cert, key)
    # and the same through cordon's client: refused, nothing reached the backend
    with (
        Client(
            url=tls_server.url,
            pin=pki.pins["node-a"],
            cert=pki.cert("stranger"),
            key=pki.key("stranger"),
        ) as client,
        pytest.raises(DaemonError, match="does not accept this client certificate"),
    ):
        client.status()
    assert backend.calls == []


def _refused_from(srv: TlsServer, cert: Path | None, key: Path | None, **tls: Any) -> str:
    """A handshake the server refuses; returns the client's own IP:PORT (the peer it saw)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for name, value in tls.items():
        setattr(ctx, name, value)
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
        me = "{}:{}".format(*raw.getsockname())
        with (  # noqa: PT012
            pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
            ctx.wrap_socket(raw) as t,
        ):
            t.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if t.recv(65536) == b"":  # TLS 1.3: the refusal may read as a close
                raise ConnectionResetError("closed without an answer")
    return me


def test_each_refused_handshake_is_audited_with_the_peer_and_why(
    pki: Pki, tls_policy: Policy, backend: FakeBackend, audit_log: Path
) -> None:
    """No certificate, a certificate not pinned, no TLS at all: each a `tls.refused` record
    naming the client's address and why (never a byte it sent); a listed client: none."""
    with TlsServer(make_app(backend, tls_policy), _server_context(pki, tls_policy)) as srv:
        nocert = _refused_from(srv, None, None)
        stranger = _refused_from(srv, pki.cert("stranger"), pki.key("stranger"))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw:
            plain = "{}:{}".format(*raw.getsockname())
            raw.sendall(b"GET /v1/status?token=s3cret HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(65536) == b""  # no TLS: closed, nothing answered
        assert _raw_handshake(srv, pki.cert("bob"), pki.key("bob")).startswith(b"HTTP/1.1 200")
    # the listener stopped: every record under way is written
    got = records(audit_log, "tls.refused")
    assert [(r["peer"], r["reason"]) for r in got] == [
        (nocert, "no certificate"),
        (stranger, "unknown pin"),
        (plain, "tls error"),
    ]
    assert {r["listener"] for r in got} == {f"api 127.0.0.1:{srv.port}"}
    assert all(r["outcome"] == "refused" and r["level"] == "warning" for r in got)
    assert "CERTIFICATE_VERIFY_FAILED" in next(r for r in got if r["peer"] == stranger)["detail"]
    assert not any("s3cret" in str(r) for r in records(audit_log))
    assert records(audit_log, "tls.refusals_suppressed") == []
    assert [(c.name, c.user) for c in backend.calls] == [("status", "bob")]  # bob only


def test_refused_handshakes_beyond_the_rate_limit_are_counted_in_one_record(
    pki: Pki, tls_policy: Policy, backend: FakeBackend, audit_log: Path
) -> None:
    """A scanner: 10 refusals recorded one by one in the window, the rest counted in ONE
    `tls.refusals_suppressed` record (how many, from how many addresses)."""
    extra = 4
    with TlsServer(make_app(backend, tls_policy), _server_context(pki, tls_policy)) as srv:
        peers = [_refused_from(srv, None, None) for _ in range(RECORDED_PER_WINDOW + extra)]
    got = records(audit_log, "tls.refused")
    assert [r["peer"] for r in got] == peers[:RECORDED_PER_WINDOW]
    [counted] = records(audit_log, "tls.refusals_suppressed")
    assert counted["refused"] == extra
    assert counted["peers"] == 1
    assert counted["peers_listed"] == ["127.0.0.1"]
    assert counted["window_s"] == WINDOW_S
    assert counted["listener"] == f"api 127.0.0.1:{srv.port}"


def test_the_window_ends_with_its_count_and_a_new_window_records_again(audit_log: Path) -> None:
    """The rate limiter's window, shortened: its suppressed count is recorded when it ends,
    without waiting for another refusal; the next window records one by one again."""

    async def scan() -> None:
        log = RefusalLog("api test", window_s=0.3, per_window=2)
        for n in range(5):
            log.refused(f"192.0.2.{n}:1000", ssl.SSLError(1, "[SSL] no certificate"))
        await asyncio.sleep(0.6)  # the window's end fires its record
        await asyncio.gather(*log._tasks)
        assert len(records(audit_log, "tls.refusals_suppressed")) == 1
        log.refused("192.0.2.9:1000", ConnectionResetError())
        await log.drain()

    asyncio.run(scan())
    got = records(audit_log, "tls.refused")
    assert [r["peer"] for r in got] == ["192.0.2.0:1000", "192.0.2.1:1000", "192.0.2.9:1000"]
    [counted] = records(audit_log, "tls.refusals_suppressed")
    assert (counted["refused"], counted["peers"]) == (3, 3)
    assert counted["peers_listed"] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
    assert got[-1]["detail"] == "connection closed during the handshake"


def test_the_listed_certificate_over_raw_tls_is_answered(tls_server: TlsServer, pki: Pki) -> None:
    """The counterpart of the refusals above: the same raw client with bob's certificate."""
    got = _raw_handshake(tls_server, pki.cert("bob"), pki.key("bob"))
    assert got.startswith(b"HTTP/1.1 200"), got[:200]


def test_wrong_server_pin_sends_nothing(
    tls_server: TlsServer, pki: Pki, backend: FakeBackend
) -> None:
    with (
        _as(tls_server, pki, "bob", pin=pki.pins["node-b"]) as bob,
        pytest.raises(AccessRefused, match="not the pinned") as refused,
    ):
        _start(bob)
    assert pki.pins["node-a"] in refused.value.message  # what it showed
    assert backend.calls == []


def test_a_token_of_another_user_with_a_certificate_is_refused(
    tls_server: TlsServer, pki: Pki, tokens: dict[str, str], backend: FakeBackend
) -> None:
    with (
        _as(tls_server, pki, "dave", token=tokens["bob"]) as mixed,
        pytest.raises(AccessRefused, match="not dave's"),
    ):
        _start(mixed)
    with _as(tls_server, pki, "bob", token=tokens["bob"]) as same:
        assert _start(same)["status"]
    assert [(c.user, c.via) for c in backend.calls] == [("bob", "certificate")]


def test_client_refuses_to_speak_without_tls_pin_or_certificate(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="not https"):
        Client(url="http://127.0.0.1:1", pin=pki.pins["node-a"])
    with pytest.raises(ConfigError, match="never trusted unverified"):
        Client(url="https://127.0.0.1:1", cert=pki.cert("bob"), key=pki.key("bob"))
    with pytest.raises(ConfigError, match="no client certificate"):
        Client(url="https://127.0.0.1:1", pin=pki.pins["node-a"])


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ("  bob: [{bob}, {bob}]\n", "listed for bob already"),
        ("  nobody: {stranger}\n", "certificate for nobody, who has no role"),
        ("  bob: env:X\n", "not a secret reference"),
        ("  bob: {missing}\n", "cannot read certificate"),
    ],
)
def test_roles_file_certificates_are_validated(
    tmp_path: Path, pki: Pki, tokens: Any, entries: str, why: str
) -> None:
    path = tmp_path / "roles.yaml"
    text = entries.format(
        bob=pki.cert("bob"), stranger=pki.cert("stranger"), missing=tmp_path / "no.pem"
    )
    path.write_text(f"operator: [bob]\ncertificates:\n{text}", encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=why) as bad:
        Policy.load(path)
    assert f"{path}:3" in bad.value.message  # file and line


def test_daemon_settings_refuse_tcp_without_tls(
    monkeypatch: pytest.MonkeyPatch, tls_policy: Policy, pki: Pki
) -> None:
    monkeypatch.setenv("CORDON_API_LISTEN", "127.0.0.1:8600")
    with pytest.raises(ConfigError, match="never served over TCP without TLS"):
        api_listen(tls_policy)
    monkeypatch.setenv("CORDON_API_TLS_CERT", str(pki.cert("node-a")))
    monkeypatch.setenv("CORDON_API_TLS_KEY", str(pki.key("node-a")))  # not file:
    with pytest.raises(ConfigError, match="file reference"):
        api_listen(tls_policy)
    monkeypatch.setenv("CORDON_API_TLS_KEY", f"file:{pki.key('node-a')}")
    got = api_listen(tls_policy)
    assert got is not None
    assert (got.advertise, got.tls.pin) == ("https://127.0.0.1:8600", pki.pins["node-a"])
    assert got.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    monkeypatch.setenv("CORDON_API_LISTEN", "0.0.0.0:8600")
    with pytest.raises(ConfigError, match="listening on every address") as every:
        api_listen(tls_policy)
    assert "CORDON_API_ADVERTISE" in (every.value.hint or "")
    monkeypatch.setenv("CORDON_API_ADVERTISE", "https://cordon-b.example.org:8600")
    got = api_listen(tls_policy)
    assert got is not None and got.advertise == "https://cordon-b.example.org:8600"
    assert settings.current().api_listen == "0.0.0.0:8600"


def test_view_beyond_loopback_needs_tls_and_then_a_client_certificate(
    monkeypatch: pytest.MonkeyPatch,
    pki: Pki,
    tls_policy: Policy,
    backend: FakeBackend,
    audit_log: Path,
) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        listen_address("10.1.2.3:8443")
    assert listen_address("10.1.2.3:8443", tls=True) == ("10.1.2.3", 8443)
    assert listen_address("127.0.0.1:8443") == ("127.0.0.1", 8443)

    async def plain_beyond_loopback() -> None:
        await start_view(web.Application(), "10.1.2.3", 8443)

    with pytest.raises(ConfigError, match="without TLS"):
        asyncio.run(plain_beyond_loopback())
    monkeypatch.setenv("CORDON_API_TLS_CERT", str(pki.cert("node-a")))
    monkeypatch.setenv("CORDON_API_TLS_KEY", f"file:{pki.key('node-a')}")
    tls = server_tls(tls_policy)
    assert tls is not None
    from agent.view import make_view_app  # noqa: PLC0415

    srv = _ViewServer(make_view_app(backend, tls_policy), tls.context)
    with srv:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            srv.fetch(None, None)
        got = srv.fetch(pki.cert("dave"), pki.key("dave"))
        assert got.startswith(b"HTTP/1.1 401"), got[:200]  # past TLS: the view's token next
    # the refused handshake is audited as the API's are, naming the view's listener
    [refused] = records(audit_log, "tls.refused")
    assert refused["listener"] == f"view 127.0.0.1:{srv.port}"
    assert refused["reason"] == "no certificate"


class _ViewServer(TlsServer):
    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = await start_view(self.app, "127.0.0.1", self.port, ssl_context=self.ctx)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def fetch(self, cert: Path | None, key: Path | None) -> bytes:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        if cert is not None and key is not None:
            ctx.load_cert_chain(cert, key)
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw,
            ctx.wrap_socket(raw) as t,
        ):
            t.sendall(b"GET /view/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = t.recv(65536)
        if got == b"":
            raise ConnectionResetError("closed without an answer")
        return got


# -- a standby's redirect ----------------------------------------------------------------------


class _StandbyBackend(FakeBackend):
    """A standby's refusal of an order, in the real service's words (agent.service.service
    `_require_active`); reads are answered."""

    def __init__(self, node: str, active: str) -> None:
        super().__init__()
        self.node, self.active = node, active

    def start_run(self, caller: Caller, **kw: Any) -> JSON:
        self._record("start_run", caller)
        raise StandbyError(
            f"this daemon (node {self.node}) is a standby: it changes nothing; the active "
            f"daemon is {self.active}"
        )


@dataclass
class _Directory:
    """Where the active node is, as `agent.api.nodes.Directory` reads it from cordon_nodes
    (tests/ha/test_reach.py reads the real table)."""

    node: str
    found: ActiveNode | None

    def active(self, *, fresh: bool = False) -> ActiveNode | None:
        return self.found


def test_standby_redirects_once_to_the_active_node(
    tmp_path: Path, pki: Pki, tls_policy: Policy, tokens: dict[str, str], audit_log: Path
) -> None:
    active_backend = FakeBackend()
    with TlsServer(make_app(active_backend, tls_policy), _server_context(pki, tls_policy)) as a:
        there = ActiveNode("node-a", 3, a.url, pki.pins["node-a"])
        standby = _StandbyBackend("node-b", "node node-a (epoch 3)")
        directory = cast(Directory, _Directory("node-b", there))
        app = make_app(standby, tls_policy, directory=directory)
        with Server(app, tmp_path / "b" / "cordon.sock") as b:
            # over the standby's socket, as bob by token, with bob's certificate to follow
            with Client(
                b.path, token=tokens["bob"], cert=pki.cert("bob"), key=pki.key("bob")
            ) as bob:
                assert _start(bob)["status"]
                assert bob.notes == [
                    f"{b.path} is a standby: the order was sent to the active node node-a "
                    f"at {a.url}"
                ]
                assert "sites" in bob.status()  # a read: answered by the standby itself
                assert any("a standby, from the shared state" in n for n in bob.notes)
            # without a client certificate: the standby's refusal, saying where to go
            with Client(b.path, token=tokens["bob"]) as nocert, pytest.raises(StandbyError) as err:
                _start(nocert)
            assert err.value.exit_code == 25
            assert a.url in err.value.message and "CORDON_API_CLIENT_CERT" in (err.value.hint or "")
    assert [(c.name, c.user, c.via) for c in active_backend.calls] == [
        ("start_run", "bob", "certificate")
    ]
    assert [c.name for c in standby.calls] == ["start_run", "status", "start_run"]


def _bob_on(srv: Server, pki: Pki, tokens: dict[str, str]) -> Client:
    return Client(srv.path, token=tokens["bob"], cert=pki.cert("bob"), key=pki.key("bob"))


def test_redirect_is_followed_once_never_in_a_loop_and_none_active_is_said(
    tmp_path: Path, pki: Pki, tls_policy: Policy, tokens: dict[str, str], audit_log: Path
) -> None:
    loop_backend = _StandbyBackend("node-a", "node node-b (epoch 4)")
    directory_a = _Directory("node-a", None)
    app_a = make_app(loop_backend, tls_policy, directory=cast(Directory, directory_a))
    with TlsServer(app_a, _server_context(pki, tls_policy)) as a:
        # node-a says node-b is active; node-b says node-a is: one hop, then the error
        directory_a.found = ActiveNode("node-b", 4, f"{a.url}/", pki.pins["node-a"])
        other = _StandbyBackend("node-b", "node node-a (epoch 4)")
        directory_b = _Directory("node-b", ActiveNode("node-a", 4, a.url, pki.pins["node-a"]))
        app_b = make_app(other, tls_policy, directory=cast(Directory, directory_b))
        with Server(app_b, tmp_path / "b" / "cordon.sock") as b:
            with _bob_on(b, pki, tokens) as c, pytest.raises(StandbyError) as err:
                _start(c)
            assert err.value.exit_code == 25
            assert [x.name for x in loop_backend.calls] == ["start_run"]  # one hop only
            assert [x.name for x in other.calls] == ["start_run"]
            directory_b.found = None  # nobody holds the lease
            with _bob_on(b, pki, tokens) as c, pytest.raises(StandbyError) as none:
                _start(c)
            assert none.value.exit_code == 25
            assert "no node holds the active lease" in none.value.message
            assert "no daemon is active" in (none.value.hint or "")
            assert [x.name for x in loop_backend.calls] == ["start_run"]


def test_decision_type_is_the_apis(tls_policy: Policy) -> None:
    """The certificate caller goes through the same `authorize` as a token caller."""
    from agent.api.auth import Action, authorize  # noqa: PLC0415

    dave = tls_policy.identify_certificate(
        next(p for p, u in tls_policy.certificates.items() if u == "dave")
    )
    d: Decision = authorize(dave, Action.RUN)
    assert not d.allowed and dave.via == "certificate" and dave.uid == -1
