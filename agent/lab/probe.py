"""TCP reachability probes of the twin: one parallel batch (`probe_tcp`) and a background prober.

Imports the standard library, agent.errors and agent.lab.netns only; never netmiko/pysnmp/paramiko.

Every probe starts inside a twin namespace (its socket is created there) and targets only
198.18.0.0/15; a target outside that range raises SafetyError before any socket exists.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self

from agent.errors import LabError
from agent.lab import netns

_BANNER_MAX = 1024
_UNREACHABLE = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
    errno.EADDRNOTAVAIL,
}


class Status(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    WRONG_BANNER = "wrong-banner"
    ABANDONED = "abandoned"  # not waited for any longer (`GiveUp`): says nothing of the flow


@dataclass(frozen=True)
class ProbeTarget:
    """Connect from namespace `netns` (bound to `src` if given) to `dst:port`.

    With `banner`, the first line the service sends (without its newline) must equal it;
    with None, an established connection is enough.
    """

    netns: str
    dst: str
    port: int
    banner: str | None = None
    src: str | None = None

    def __str__(self) -> str:
        src = f"{self.src}@" if self.src else ""
        return f"{self.netns}:{src}->{self.dst}:{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    target: ProbeTarget
    status: Status
    elapsed_ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def validate(targets: Sequence[ProbeTarget]) -> None:
    """Raise SafetyError/LabError for any target that must not be probed (nothing is opened)."""
    for t in targets:
        netns.check_name(t.netns)
        netns.check_twin_address(t.dst, f"probe destination of {t}")
        if t.src is not None:
            netns.check_twin_address(t.src, f"probe source of {t}")
        if not 0 < t.port < 65536:
            raise LabError(f"probe {t}: port {t.port} out of range 1-65535")
        if t.banner is not None and "\n" in t.banner:
            raise LabError(f"probe {t}: expected banner must be one line")


@dataclass
class _Pending:
    index: int
    sock: socket.socket
    started: float
    connected: bool = False
    buf: bytearray = field(default_factory=bytearray)


class GiveUp(Protocol):
    """The targets of a batch no longer worth waiting for (`given_up`, by index), and a file
    descriptor readable (bytes for the batch to drain) when more may be: the batch's selector
    wakes on it. Their result: ABANDONED, never a verdict."""

    def given_up(self, index: int) -> bool: ...

    def fileno(self) -> int: ...


class _Batch:
    """One probe_tcp call: its sockets, its selector and its results."""

    def __init__(self, targets: list[ProbeTarget], give_up: GiveUp | None = None) -> None:
        self.targets = targets
        self.results: list[ProbeResult | None] = [None] * len(targets)
        self.sel = selectors.DefaultSelector()
        self.sockets: list[socket.socket] = []
        self.give_up = give_up

    def run(self, timeout: float) -> list[ProbeResult]:
        deadline = time.monotonic() + timeout
        wake = None if self.give_up is None else self.give_up.fileno()
        try:
            self._connect_all(self._make_sockets())
            if wake is not None:
                self.sel.register(wake, selectors.EVENT_READ, None)
                self._drop_given_up()
            while len(self.sel.get_map()) > (wake is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for key, _ in self.sel.select(left):
                    if key.data is None:
                        os.read(key.fd, 4096)
                        self._drop_given_up()
                    elif self.results[key.data.index] is None:
                        self._on_event(key.data)
            for key in list(self.sel.get_map().values()):
                p = key.data
                if p is not None:
                    detail = "no banner" if p.connected else "no connection"
                    self._finish(p, Status.TIMEOUT, detail)
        finally:
            for s in self.sockets:
                s.close()
            self.sel.close()
        return [r for r in self.results if r is not None]

    def _drop_given_up(self) -> None:
        assert self.give_up is not None
        for key in list(self.sel.get_map().values()):
            p = key.data
            if p is not None and self.give_up.given_up(p.index):
                self._finish(p, Status.ABANDONED, "given up: already decided elsewhere")

    def _make_sockets(self) -> dict[int, socket.socket]:
        by_ns: dict[str, list[int]] = defaultdict(list)
        for i, t in enumerate(self.targets):
            by_ns[t.netns].append(i)
        made: dict[int, socket.socket] = {}
        for ns, indices in by_ns.items():
            with netns.inside(ns):
                for i in indices:
                    made[i] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.sockets.append(made[i])
        return made

    def _connect_all(self, made: dict[int, socket.socket]) -> None:
        for i, t in enumerate(self.targets):
            s = made[i]
            s.setblocking(False)
            p = _Pending(i, s, time.monotonic())
            self.sel.register(s, selectors.EVENT_WRITE, p)
            err = start_connect(s, t)
            if err not in (0, errno.EINPROGRESS):
                self._finish(p, _classify(err), errno.errorcode.get(err, str(err)))

    def _on_event(self, p: _Pending) -> None:
        if p.connected:
            self._read_banner(p)
            return
        err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(p, _classify(err), errno.errorcode.get(err, str(err)))
        elif self.targets[p.index].banner is None:
            self._finish(p, Status.OK)
        else:
            p.connected = True
            self.sel.modify(p.sock, selectors.EVENT_READ, p)

    def _read_banner(self, p: _Pending) -> None:
        try:
            chunk = p.sock.recv(_BANNER_MAX)
        except BlockingIOError:
            return
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc))
            self._finish(p, Status.WRONG_BANNER, f"{name} before banner")
            return
        p.buf += chunk
        if chunk and b"\n" not in p.buf and len(p.buf) < _BANNER_MAX:
            return
        line = bytes(p.buf).split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if not p.buf:
            self._finish(p, Status.WRONG_BANNER, "closed before banner")
        elif line == self.targets[p.index].banner:
            self._finish(p, Status.OK)
        else:
            self._finish(p, Status.WRONG_BANNER, f"got {line[:80]!r}")

    def _finish(self, p: _Pending, status: Status, detail: str = "") -> None:
        elapsed = (time.monotonic() - p.started) * 1000.0
        self.results[p.index] = ProbeResult(
            self.targets[p.index], status, round(elapsed, 3), detail
        )
        self.sel.unregister(p.sock)
        p.sock.close()


def start_connect(s: socket.socket, t: ProbeTarget) -> int:
    """Send `t`'s SYN from the non-blocking socket `s` (bound to `t.src` if set): the errno,
    EINPROGRESS while the handshake goes on (a failure to bind or connect is its errno too)."""
    try:
        if t.src is not None:
            s.bind((t.src, 0))
        return s.connect_ex((t.dst, t.port))
    except OSError as exc:
        return exc.errno or errno.EIO


def probe_tcp(
    targets: Sequence[ProbeTarget], timeout: float, *, give_up: GiveUp | None = None
) -> list[ProbeResult]:
    """Probe all targets in parallel; results in target order; `timeout` bounds the whole batch.
    With `give_up`, a target given up before its answer is not waited for (ABANDONED).

    Sockets are non-blocking, created in each target's namespace, and driven by one selector.
    Raises SafetyError (before any socket exists) for a target outside 198.18.0.0/15.
    """
    checked = list(targets)
    validate(checked)
    if timeout <= 0:
        raise LabError(f"probe timeout must be positive, got {timeout}")
    if not checked:
        return []
    return _Batch(checked, give_up).run(timeout)


def _classify(err: int) -> Status:
    if err == errno.ECONNREFUSED:
        return Status.REFUSED
    if err == errno.ETIMEDOUT:
        return Status.TIMEOUT
    return Status.UNREACHABLE


@dataclass(frozen=True)
class ProbeStats:
    """What a ContinuousProber saw for one target. Times are `time.time()` seconds."""

    target: ProbeTarget
    sent: int
    failed: int
    first_failure_at: float | None
    first_failure: ProbeResult | None
    last: ProbeResult | None


@dataclass(frozen=True)
class Sample:
    at: float
    result: ProbeResult


class ContinuousProber:
    """Probe `targets` every `interval` seconds in a background thread, recording every result.

    Use as a context manager or call start(); stop() returns stats per target and raises
    LabError if the prober itself broke (then its zero failures would prove nothing).
    Stats are exact for the whole run; `samples` keeps the last `max_samples` raw results
    (every failure is also counted in the stats, whatever the cap).
    """

    def __init__(
        self,
        targets: Sequence[ProbeTarget],
        interval: float = 0.2,
        timeout: float = 1.0,
        *,
        max_samples: int = 200_000,
    ) -> None:
        self.targets = list(dict.fromkeys(targets))
        validate(self.targets)
        if interval <= 0 or timeout <= 0:
            raise LabError("prober interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
        self.samples: deque[Sample] = deque(maxlen=max_samples)
        self.rounds = 0
        self.error: BaseException | None = None
        self._stats = {t: ProbeStats(t, 0, 0, None, None, None) for t in self.targets}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cordon-prober", daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            at = time.time()
            try:
                batch = probe_tcp(self.targets, self.timeout)
            except BaseException as exc:  # recorded and re-raised by stop()
                self.error = exc
                return
            with self._lock:
                self.rounds += 1
                for r in batch:
                    self.samples.append(Sample(at, r))
                    self._stats[r.target] = _account(self._stats[r.target], at, r)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow round: start the next one now, do not try to catch up
                next_at, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def stats(self) -> dict[ProbeTarget, ProbeStats]:
        """A snapshot of the stats so far (safe while running)."""
        with self._lock:
            return dict(self._stats)

    def stop(self) -> dict[ProbeTarget, ProbeStats]:
        """Stop the thread (after its current round) and return the stats per target."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.error is not None:
            raise LabError(f"continuous prober failed: {self.error}") from self.error
        return self.stats()


def _account(s: ProbeStats, at: float, r: ProbeResult) -> ProbeStats:
    if r.ok:
        return replace(s, sent=s.sent + 1, last=r)
    first = s.first_failure_at is None
    return replace(
        s,
        sent=s.sent + 1,
        failed=s.failed + 1,
        first_failure_at=at if first else s.first_failure_at,
        first_failure=r if first else s.first_failure,
        last=r,
    )
