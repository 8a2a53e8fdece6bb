"""Owns the bounded warm-session pool (keepalive, reconnect) and parallel runs over any driver.
Must not import netmiko, paramiko or pysnmp, nor the engine. Drivers come from the factory it is
given; by default the platform registry's `driver_for`, looked up when the pool is made (the one
place the shared drivers layer reaches up to `agent.platforms`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agent.drivers.base import Driver, Target, Timeouts, Via
from agent.drivers.limits import ensure_for_pool
from agent.errors import ConnectError, CordonError, DeviceError, DeviceTimeout
from agent.inventory.models import Inventory

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """The result of one device's part of a parallel run: a value, or the error it raised."""

    device: str
    value: T | None
    error: CordonError | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


def raise_on_error(outcomes: Iterable[Outcome[T]]) -> None:
    """Raise the first failure of a parallel run (the caller decides when to)."""
    for o in outcomes:
        if o.error is not None:
            raise o.error


@dataclass
class _Entry:
    driver: Driver
    last_used: float = field(default_factory=time.monotonic)
    busy: bool = False
    last_error: str | None = None


class Pool:
    """Warm sessions to devices, held open between uses (the daemon keeps one for its life).

    `session(device)` hands out a connected driver, reconnecting if the session dropped and
    probing it first if it sat idle longer than `probe_after`. A keepalive thread pings idle
    sessions every `keepalive` seconds and reconnects dropped ones. At most `max_size` sessions
    are open; the least recently used idle one is closed to make room. Making a pool raises the
    process's open-file soft limit to its hard limit, and refuses (ConfigError) a `max_size`
    whose sessions could need more descriptors than that (`agent.drivers.limits`).
    """

    def __init__(
        self,
        inv: Inventory,
        *,
        timeouts: Timeouts | None = None,
        max_size: int = 64,
        keepalive: float | None = 30.0,
        probe_after: float = 10.0,
        factory: Callable[[Target, Timeouts, Via], Driver] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        ensure_for_pool(inv, max_size)  # before any session: refuse, or have room for them all
        self.inv = inv
        self.timeouts = timeouts or Timeouts()
        self.max_size = max_size
        self.probe_after = probe_after
        if factory is None:
            from agent.platforms.registry import driver_for  # noqa: PLC0415 - see the docstring

            factory = driver_for
        self._factory = factory
        self._entries: dict[tuple[str, Via], _Entry] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        if keepalive:
            self._keeper = threading.Thread(
                target=self._keepalive, args=(keepalive,), name="cordon-pool-keepalive", daemon=True
            )
            self._keeper.start()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- leasing ---------------------------------------------------------------------------------

    def _acquire(self, device: str, via: Via, wait: float | None = None) -> _Entry:
        key = (device, via)
        waited = self.timeouts.connect if wait is None else wait
        deadline = time.monotonic() + waited
        with self._cond:
            while True:
                if self._closed:
                    raise ConnectError(device, "connect", "the connection pool is closed")
                entry = self._entries.get(key)
                if entry is not None and not entry.busy:
                    entry.busy = True
                    return entry
                if entry is None and (len(self._entries) < self.max_size or self._evict_one()):
                    target = Target.of(self.inv, device)
                    entry = _Entry(self._factory(target, self.timeouts, via), busy=True)
                    self._entries[key] = entry
                    return entry
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeout(
                        device,
                        "connect",
                        f"waited {waited:g} s for a pooled session "
                        f"({len(self._entries)}/{self.max_size} open, all busy)",
                        hint="raise the pool size or lower the parallelism",
                    )
                self._cond.wait(left)

    def _evict_one(self) -> bool:
        idle = [(e.last_used, k) for k, e in self._entries.items() if not e.busy]
        if not idle:
            return False
        _, key = min(idle)
        self._entries.pop(key).driver.close()
        return True

    def _release(self, entry: _Entry) -> None:
        with self._cond:
            entry.busy = False
            entry.last_used = time.monotonic()
            self._cond.notify_all()

    @contextmanager
    def session(
        self, device: str, via: Via = "ssh", *, wait: float | None = None
    ) -> Iterator[Driver]:
        """A connected driver for `device`, exclusively yours inside the block. `wait`: how long
        to wait for a session another thread holds (default `timeouts.connect`), then
        DeviceTimeout."""
        entry = self._acquire(device, via, wait)
        try:
            driver = entry.driver
            # SNMP is connectionless: a probe would cost what the request costs, and find out
            # nothing the request will not
            stale = time.monotonic() - entry.last_used > self.probe_after
            if via != "snmp" and driver.is_open() and stale:
                try:
                    driver.ping()
                except DeviceError:
                    driver.close()
            if not driver.is_open():
                driver.connect()
            yield driver
            entry.last_error = None
        except CordonError as exc:
            entry.last_error = exc.message
            raise
        finally:
            self._release(entry)

    def run(
        self, device: str, fn: Callable[[Driver], T], via: Via = "ssh", *, wait: float | None = None
    ) -> T:
        """`fn(driver)` on a pooled session of `device` (`wait`: see `session`)."""
        with self.session(device, via, wait=wait) as driver:
            return fn(driver)

    def run_many(
        self,
        devices: Iterable[str],
        fn: Callable[[Driver], T],
        *,
        via: Via = "ssh",
        max_workers: int = 32,
    ) -> list[Outcome[T]]:
        """`fn` on every device in parallel; each failure is an Outcome, never lost."""
        names = list(devices)
        if not names:
            return []

        def one(name: str) -> Outcome[T]:
            t0 = time.monotonic()
            try:
                value = self.run(name, fn, via)
            except CordonError as exc:
                return Outcome(name, None, exc, time.monotonic() - t0)
            return Outcome(name, value, None, time.monotonic() - t0)

        workers = max(1, min(max_workers, len(names)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cordon-dev") as ex:
            return list(ex.map(one, names))

    def warm(self, devices: Iterable[str], *, via: Via = "ssh") -> list[Outcome[None]]:
        """Open sessions to `devices` now (in parallel), so the next use pays no handshake."""
        return self.run_many(devices, lambda d: None, via=via)

    # -- upkeep ----------------------------------------------------------------------------------

    def _keepalive(self, interval: float) -> None:
        """Ping SSH sessions nobody used for `interval` (a session just used needs no ping;
        SNMP has no session to keep)."""
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._cond:
                idle = [
                    e
                    for (_dev, via), e in self._entries.items()
                    if not e.busy and via != "snmp" and now - e.last_used >= interval * 0.9
                ]
                for e in idle:
                    e.busy = True
            if idle:
                with ThreadPoolExecutor(max_workers=min(16, len(idle))) as ex:
                    list(ex.map(self._upkeep, idle))

    def _upkeep(self, entry: _Entry) -> None:
        """Ping an idle session, or reconnect a dropped one; remember the error if any."""
        try:
            if self._stop.is_set():
                return
            if entry.driver.is_open():
                entry.driver.ping()
            else:
                entry.driver.connect()
            entry.last_error = None
        except CordonError as exc:
            entry.last_error = exc.message
            entry.driver.close()
        finally:
            self._release(entry)

    def status(self) -> list[tuple[str, Via, bool, str | None]]:
        """(device, via, open, last error) of every pooled session."""
        with self._cond:
            return [
                (dev, via, e.driver.is_open(), e.last_error)
                for (dev, via), e in sorted(self._entries.items())
            ]

    def close(self) -> None:
        """Close every session and stop the keepalive thread."""
        self._stop.set()
        with self._cond:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
            self._cond.notify_all()
        for e in entries:
            e.driver.close()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=self.timeouts.command)
