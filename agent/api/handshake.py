"""TLS listeners whose refused handshakes are audited: the API over TCP (`agent.api.tcp`) and the
crisis-cell view beyond loopback (`agent.view.server`), both with pinned client certificates
(`agent.mtls`). OpenSSL refuses a client without one of the pinned certificates during the
handshake, before any HTTP request exists; asyncio then drops the connection and tells no one.
Here each connection's handshake is run by `TlsSite` itself (`loop.start_tls`), so a refusal is
known, with the peer's address, and recorded as `tls.refused`:

    listener  which listener (api, view) and its address
    peer      the client's IP:PORT
    reason    no certificate | unknown pin (a certificate, not one of the pinned ones) |
              tls error (anything else: no TLS at all, an old protocol, no shared cipher, the
              connection closed or silent during the handshake)
    detail    OpenSSL's reason (e.g. PEER_DID_NOT_RETURN_A_CERTIFICATE), never any byte the
              client sent, nor a key

Rate limit, so a scanner cannot flood the chain: per listener, at most `RECORDED_PER_WINDOW`
(10) refusals are recorded one by one in each window of `WINDOW_S` (60 s) from the first refusal
of the window; the others are counted, and when the window ends ONE `tls.refusals_suppressed`
record gives their number, how many distinct peer addresses they came from (the first few
listed) and the window. At most 11 records per listener a minute, whatever the scanner sends.

Records are written one at a time, in order, from a worker thread (the audit chain may be a
database); a record that cannot be written is said on stderr, and the listener goes on serving.

Imports asyncio, ssl, aiohttp and `agent.audit`, `agent.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from agent import audit
from agent.errors import CordonError

__all__ = ["RECORDED_PER_WINDOW", "WINDOW_S", "RefusalLog", "TlsSite", "refusal_reason"]

WINDOW_S = 60.0
RECORDED_PER_WINDOW = 10
HANDSHAKE_TIMEOUT_S = 10.0
_PEERS_LISTED = 5
_PEERS_COUNTED = 10_000  # distinct addresses remembered in one window, at most


def refusal_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, detail) of a failed server-side handshake: no certificate, unknown pin, or a
    TLS error; the detail is OpenSSL's reason or the failure's kind, nothing the client sent."""
    if isinstance(exc, ssl.SSLError):
        why = str(getattr(exc, "reason", None) or type(exc).__name__)
        if why in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
            return "no certificate", why
        if isinstance(exc, ssl.SSLCertVerificationError) or why == "CERTIFICATE_VERIFY_FAILED":
            verify = getattr(exc, "verify_message", None)
            return "unknown pin", f"{why}: {verify}" if verify else why
        return "tls error", why
    if isinstance(exc, TimeoutError):
        return "tls error", f"no handshake within {HANDSHAKE_TIMEOUT_S:.0f} s"
    if isinstance(exc, ConnectionError | EOFError):
        return "tls error", "connection closed during the handshake"
    return "tls error", type(exc).__name__


@dataclass
class RefusalLog:
    """The rate-limited record of one listener's refused handshakes (see the module)."""

    listener: str
    window_s: float = WINDOW_S
    per_window: int = RECORDED_PER_WINDOW
    _window_start: float | None = None
    _window_from: str = ""
    _recorded: int = 0
    _suppressed: int = 0
    _peers: dict[str, None] = field(default_factory=dict)  # suppressed peers' addresses, ordered
    _flush: asyncio.TimerHandle | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock)

    def refused(self, peer: str, exc: BaseException) -> None:
        """A handshake from `peer` failed with `exc`: recorded, or counted (on the loop)."""
        now = time.monotonic()
        if self._window_start is None or now - self._window_start >= self.window_s:
            self.flush()
            self._window_start, self._window_from = now, _now()
        reason, detail = refusal_reason(exc)
        if self._recorded < self.per_window:
            self._recorded += 1
            self._write(_refused, self.listener, peer, reason, detail)
            return
        self._suppressed += 1
        if len(self._peers) < _PEERS_COUNTED:
            self._peers[peer.rpartition(":")[0] or peer] = None
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self._window_start + self.window_s - now, self.flush)

    def flush(self) -> None:
        """Record the window's suppressed refusals, if any, and start a new window."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._suppressed:
            peers = list(self._peers)
            self._write(
                _suppressed,
                self.listener,
                self._suppressed,
                len(peers),
                peers[:_PEERS_LISTED],
                self._window_from,
                self.window_s,
            )
        self._window_start, self._recorded, self._suppressed = None, 0, 0
        self._peers = {}

    def _write(self, fn: Any, *args: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._in_turn(fn, *args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_turn(self, fn: Any, *args: Any) -> None:
        """One record at a time, in the order of the refusals (the lock is first come, first
        served), each from a worker thread."""
        async with self._turn:
            await asyncio.to_thread(_guarded, fn, *args)

    async def drain(self) -> None:
        """Flush and wait for every record under way (the listener stops)."""
        self.flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _address(peername: Any) -> str:
    """IP:PORT ([IPv6]:PORT) of a socket's peer name."""
    if not peername:
        return "unknown"
    host = str(peername[0])
    return f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _guarded(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except CordonError as exc:
        sys.stderr.write(f"cordon: a refused TLS handshake could not be audited: {exc}\n")


def _refused(listener: str, peer: str, reason: str, detail: str) -> None:
    with audit.bind(actor=None, role=None, via="tls"):
        audit.get_logger().warning(
            "tls.refused",
            listener=listener,
            peer=peer,
            reason=reason,
            detail=detail,
            outcome="refused",
        )


def _suppressed(
    listener: str, count: int, peers: int, listed: list[str], since: str, window_s: float
) -> None:
    with audit.bind(actor=None, role=None, via="tls"):
        audit.get_logger().warning(
            "tls.refusals_suppressed",
            listener=listener,
            refused=count,
            peers=peers,
            peers_listed=listed,
            window_from=since,
            window_s=window_s,
            outcome="refused",
        )


class _Gate(asyncio.Protocol):
    """A new connection: its TLS handshake run here, then the HTTP protocol on the TLS
    transport; a failed handshake goes to the `RefusalLog`."""

    def __init__(self, site: TlsSite) -> None:
        self.site = site
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello waits for start_tls, none of it read here
        self.task = asyncio.get_running_loop().create_task(self.site.handshake(transport))
        self.site.pending.add(self.task)
        self.task.add_done_callback(self.site.pending.discard)

    def connection_lost(self, exc: BaseException | None) -> None:
        pass  # before the handshake began: start_tls fails, and says it


class TlsSite(web.TCPSite):
    """`web.TCPSite` over TLS whose handshakes are run, and refusals recorded, by Cordon."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        context: ssl.SSLContext,
        refusals: RefusalLog,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=context, reuse_address=True)
        self.context = context
        self.refusals = refusals
        self.pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Gate(self), self._host, self._port, reuse_address=True
        )

    async def handshake(self, transport: asyncio.Transport) -> None:
        peername = transport.get_extra_info("peername")
        peer = _address(peername)
        server = self._runner.server
        assert server is not None
        protocol = server()
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                protocol,
                self.context,
                server_side=True,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except (ssl.SSLError, OSError, TimeoutError, EOFError) as exc:
            transport.abort()
            self.refusals.refused(peer, exc)
            return
        if tls is None:  # the transport closed as the handshake ended
            self.refusals.refused(peer, ConnectionResetError())
            return
        protocol.connection_made(tls)

    async def stop(self) -> None:
        for task in list(self.pending):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.pending, return_exceptions=True)
        await self.refusals.drain()
        await super().stop()
