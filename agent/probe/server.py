"""The probe point process (`cordon probe run`): listens on its management address for the
daemon's orders over mutual TLS (`agent.probe.channel`), refuses any client but the pinned daemon
certificate, validates every order strictly (`agent.probe.protocol`), opens the flows
(`agent.probe.tcp`), and keeps the results of its scheduled runs for the daemon to read.

One order per connection; at most a few connections at once; a connection that does not finish
its handshake and order within a bound is dropped. Logs one line per event to stdout (never key
material). Imports the probe's own modules and `agent.errors`."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from agent.errors import ProbeError
from agent.probe import channel, protocol, tcp
from agent.probe.config import ProbeConfig
from agent.probe.protocol import Order, OrderError, Result

CONNECTION_S = 30.0  # a connection's whole life: handshake, order, answer
MAX_CONNECTIONS = 8


class Probe:
    """The probe's state: its config, its schedule, its kept results."""

    def __init__(self, cfg: ProbeConfig) -> None:
        self.cfg = cfg
        self.pin = channel.certificate_pin(cfg.daemon_certificate)
        self._lock = threading.Lock()
        self._kept: deque[Result] = deque(maxlen=cfg.keep_results)
        self._schedule: Order | None = None
        self._last_run: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    def handle(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The answer to one decoded order (never raises for a bad order: says why)."""
        try:
            order = protocol.parse_order(
                obj,
                legs=self.cfg.legs.keys(),
                allowed=self.cfg.allowed,
                max_flows=self.cfg.max_flows,
            )
        except OrderError as exc:
            return {"ok": False, "probe": self.cfg.id, "error": f"order refused: {exc}"}
        base: dict[str, Any] = {"ok": True, "probe": self.cfg.id, "version": protocol.VERSION}
        if order.op == "hello":
            with self._lock:
                sched = self._schedule
                last = self._last_run
            return {
                **base,
                "legs": dict(self.cfg.legs),
                "scheduled": len(sched.attempts) if sched else 0,
                "interval_s": sched.interval_s if sched else 0,
                "last_run": last,
            }
        if order.op == "run":
            results = tcp.open_flows(order.attempts)
            return {**base, "results": [r.as_dict() for r in results]}
        if order.op == "schedule":
            with self._lock:
                self._schedule = order if order.attempts else None
            self._wake.set()
            return {**base, "scheduled": len(order.attempts), "interval_s": order.interval_s}
        with self._lock:
            kept = list(self._kept)
        return {**base, "results": [r.as_dict() for r in kept]}

    def scheduler(self) -> None:
        """Runs the schedule every period (at once when a new one arrives)."""
        while not self._stop.is_set():
            with self._lock:
                order = self._schedule
            if order is None:
                self._wake.wait()
                self._wake.clear()
                continue
            results = tcp.open_flows(order.attempts)
            with self._lock:
                self._kept.extend(results)
                self._last_run = datetime.now(UTC).isoformat(timespec="seconds")
            _log(f"scheduled run: {len(results)} flows, {_summary(results)}")
            self._wake.wait(order.interval_s)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def _summary(results: list[Result]) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"


def _log(line: str) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    sys.stdout.write(f"{stamp} {line}\n")
    sys.stdout.flush()


def _serve_one(probe: Probe, ctx: ssl.SSLContext, conn: socket.socket, peer: str) -> None:
    conn.settimeout(CONNECTION_S)
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            seen = channel.peer_pin(tls)
            if seen != probe.pin:  # OpenSSL accepted it; the pin is the last word
                _log(f"refused {peer}: client certificate {seen} is not the pinned daemon's")
                return
            line = _read_line(tls)
            if not line:
                _log(f"{peer} closed the channel without an order")
                return
            try:
                answer = probe.handle(protocol.decode(line))
            except OrderError as exc:
                answer = {"ok": False, "probe": probe.cfg.id, "error": f"order refused: {exc}"}
            _log(f"order from {peer}: {_describe(answer)}")
            tls.sendall(protocol.encode(answer))
    except ssl.SSLError as exc:
        _log(f"refused {peer}: TLS handshake failed ({exc.reason or exc})")
    except (OSError, OrderError) as exc:
        _log(f"connection from {peer} dropped: {exc}")
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def _describe(answer: dict[str, Any]) -> str:
    if not answer.get("ok"):
        return str(answer.get("error"))
    if "results" in answer:
        return f"{len(answer['results'])} results"
    return "ok"


def _read_line(tls: ssl.SSLSocket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = tls.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > protocol.MAX_LINE:
            raise OrderError(f"order longer than {protocol.MAX_LINE} bytes")
    return buf.split(b"\n", 1)[0]


def serve(cfg: ProbeConfig) -> None:
    """Run the probe until SIGTERM/SIGINT. Raises ProbeError if it cannot listen."""
    probe = Probe(cfg)
    ctx = channel.server_context(cfg.certificate, cfg.key, cfg.daemon_certificate)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((cfg.address, cfg.port))
    except OSError as exc:
        raise ProbeError(
            f"probe {cfg.id} cannot listen on {cfg.address}:{cfg.port}: {exc.strerror}",
            hint="listen.address must be an address of this host (its management leg)",
        ) from None
    listener.listen(16)
    threading.Thread(target=probe.scheduler, name="schedule", daemon=True).start()
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    if cfg.pidfile is not None:
        cfg.pidfile.write_text(f"{os.getpid()}\n")
    _log(
        f"probe {cfg.id} listening on {cfg.address}:{cfg.port}, legs "
        + ", ".join(f"{z}={a}" for a, z in cfg.legs.items())
        + f", daemon pinned {probe.pin}"
    )
    try:
        while True:
            conn, (host, port) = listener.accept()
            if not slots.acquire(blocking=False):
                conn.close()
                _log(f"dropped {host}:{port}: {MAX_CONNECTIONS} connections already")
                continue

            def run(c: socket.socket = conn, p: str = f"{host}:{port}") -> None:
                try:
                    _serve_one(probe, ctx, c, p)
                finally:
                    slots.release()

            threading.Thread(target=run, daemon=True).start()
    finally:
        probe.stop()
        listener.close()
