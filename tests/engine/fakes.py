"""A scripted fake switch for engine tests that need failures real devices will not produce on
demand (a switch lost right after a command, a command rejected). Keeps real port state."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.drivers import trail
from agent.drivers.base import (
    ApplyResult,
    Backup,
    ChangeSet,
    Expectation,
    Facts,
    InterfaceState,
    Target,
    Timeouts,
    Via,
    mismatches,
)
from agent.errors import CommandRejected, DeviceTimeout, VerifyError


@dataclass
class World:
    """What the fake switches hold, and when they stop answering."""

    down: dict[str, set[str]] = field(default_factory=dict)
    lost_calls_after_reopen: int = 0  # calls that time out right after a `no shutdown`
    silent: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)  # device -> interface it refuses
    # device -> interface whose change is applied but never shows in the read-back
    unverifiable: dict[str, str] = field(default_factory=dict)
    # called once a change is applied, before its `device.change` record (as real drivers)
    after_apply: Callable[[str], None] | None = None
    # an apply waits up to this long for another device's apply to overlap it
    overlap_wait: float = 0.0
    active: int = 0  # applies in progress now
    max_active: int = 0  # the most applies ever in progress at once
    guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    overlapped: threading.Event = field(default_factory=threading.Event, repr=False)

    def factory(self, target: Target, timeouts: Timeouts, via: Via) -> FakeSwitch:
        return FakeSwitch(target, self, via)


class FakeSwitch:
    def __init__(self, target: Target, world: World, via: Via = "ssh") -> None:
        self.target, self.via, self.world = target, via, world

    def _reachable(self, op: str) -> None:
        left = self.world.silent.get(self.target.name, 0)
        if left:
            self.world.silent[self.target.name] = left - 1
            raise DeviceTimeout(self.target.name, op, "no answer (scripted)")

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def is_open(self) -> bool:
        return True

    def ping(self) -> None:
        self._reachable("ping")

    def facts(self) -> Facts:
        down = self.world.down.setdefault(self.target.name, set())
        names = [i.name for i in self.target.device.interfaces]
        return Facts(
            self.target.name,
            self.target.device.platform,
            self.via,
            tuple(InterfaceState(n, n not in down) for n in names),
        )

    def backup(self) -> Backup:
        return Backup(
            self.target.name,
            self.target.device.platform,
            self.via,
            "cfg",
            hashlib.sha256(b"cfg").hexdigest(),
        )

    def apply(self, changes: ChangeSet) -> ApplyResult:
        self._reachable("apply")
        down = self.world.down.setdefault(self.target.name, set())
        refused = self.world.reject.get(self.target.name)
        if refused and f"interface {refused}" in changes.commands:
            raise CommandRejected(
                self.target.name,
                "apply",
                f"interface {refused}",
                "% Invalid input detected (scripted)",
            )
        with self.world.guard:
            self.world.active += 1
            self.world.max_active = max(self.world.max_active, self.world.active)
            if self.world.active > 1:
                self.world.overlapped.set()
        try:
            if self.world.overlap_wait:
                self.world.overlapped.wait(self.world.overlap_wait)
            self._apply(down, changes)
        finally:
            with self.world.guard:
                self.world.active -= 1
        if self.world.after_apply is not None:
            self.world.after_apply(self.target.name)
        trail.change(
            self.target,
            via=self.via,
            action=changes.action,
            commands=changes.commands,
            outcome="ok",
            duration_s=0.0,
        )
        return ApplyResult(self.target.name, changes.action, changes.commands, "", 0.0)

    def _apply(self, down: set[str], changes: ChangeSet) -> None:
        current = None
        for line in changes.commands:
            if line.startswith("interface "):
                current = line.split()[1]
            elif line == "shutdown" and current:
                down.add(current)
            elif line == "no shutdown" and current:
                down.discard(current)
                if self.world.lost_calls_after_reopen:
                    self.world.silent[self.target.name] = self.world.lost_calls_after_reopen
        self.world.log.append(f"{self.target.name}: {' / '.join(changes.commands)}")

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        self._reachable(action)
        facts = self.facts()
        wrong = mismatches(facts, expect)
        stuck = self.world.unverifiable.get(self.target.name)
        if stuck and stuck in expect.admin_up and not expect.admin_up[stuck]:
            wrong.append(f"interface {stuck}: read-back disagrees (scripted)")
        if wrong:
            raise VerifyError(self.target.name, action, "; ".join(wrong))
        return facts
