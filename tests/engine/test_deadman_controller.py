"""Fail-closed without an on-device timer: when an IOS switch is lost right after a reopening
command, the controller re-applies the cut as soon as the switch answers again, and the undo is
reported as failed (never as done). Runs against a scripted fake switch, no twin."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

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
from agent.drivers.pool import Pool
from agent.engine.execute import Executor
from agent.engine.journal import Journal
from agent.errors import DeviceTimeout, VerifyError
from agent.inventory import load
from agent.playbook import load as load_playbook
from tests.conftest import EXAMPLE


@dataclass
class World:
    """What the fake switches hold, and when they stop answering."""

    down: dict[str, set[str]] = field(default_factory=dict)
    lost_calls_after_reopen: int = 0  # calls that time out right after a `no shutdown`
    silent: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


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
        return ApplyResult(self.target.name, changes.action, changes.commands, "", 0.0)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        self._reachable(action)
        facts = self.facts()
        wrong = mismatches(facts, expect)
        if wrong:
            raise VerifyError(self.target.name, action, "; ".join(wrong))
        return facts


def test_lost_switch_during_reopen_is_closed_again(tmp_path: Path) -> None:
    """Undo of a port quarantine loses the switch: the controller re-shuts the ports."""
    inv = load(EXAMPLE)
    world = World()
    pb_path = tmp_path / "q.yaml"
    pb_path.write_text(
        "name: q\nlevel: L4\nsteps:\n"
        "  - {name: quarantine, action: shut_zone_ports, zones: [admin]}\n"
    )
    pb = load_playbook(pb_path, inv)

    def factory(target: Target, timeouts: Timeouts, via: Via) -> FakeSwitch:
        return FakeSwitch(target, world, via)

    journal = Journal(tmp_path / "j.sqlite")
    with Pool(inv, keepalive=None, factory=factory) as pool:
        ex = Executor(inv, journal, pool, actor="t")
        ex.deadman = 10
        run = ex.run(pb, ["nantes-jules-verne"])
        assert run.status == "done"
        (port,) = world.down["nts-sw1"]
        world.lost_calls_after_reopen = 2  # the switch drops off right after `no shutdown`
        back = ex.rollback(run.run_id)
    assert back.status == "rollback_failed"
    (undo,) = back.outcomes
    assert undo.status == "undo_failed"
    assert world.down["nts-sw1"] == {port}  # closed again: it failed closed
    assert world.log[-1] == f"nts-sw1: interface {port} / shutdown"
    # the journal still records the quarantine: a later rollback can try again
    assert ("gi" in port) and journal.device_states()["nts-sw1"].down_interfaces == {port}
    assert journal.sites()["nantes-jules-verne"]["mode"] == "isolated"
    journal.close()
