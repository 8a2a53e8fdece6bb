"""The toy platform's driver: a scripted in-memory switch per device (`Switches`) that accepts
only `port <if> disable|enable` lines, refuses anything else, and reads back its real port state.
Imports the driver contract and the shared trail only."""

from __future__ import annotations

import hashlib
import re
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
    Via,
    mismatches,
)
from agent.errors import CommandRejected, VerifyError

_LINE = re.compile(r"^port (\S+) (disable|enable)$")


@dataclass
class Switches:
    """What the toy switches hold: device -> interface -> administratively up."""

    ports: dict[str, dict[str, bool]] = field(default_factory=dict)
    received: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


class ToyDriver:
    via: Via = "ssh"

    def __init__(self, target: Target, switches: Switches) -> None:
        self.target, self.switches = target, switches
        self._ports = switches.ports.setdefault(
            target.name, {i.name: True for i in target.device.interfaces}
        )

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def is_open(self) -> bool:
        return True

    def ping(self) -> None:
        return None

    def facts(self) -> Facts:
        ifs = tuple(InterfaceState(n, up) for n, up in sorted(self._ports.items()))
        return Facts(self.target.name, self.target.device.platform, self.via, ifs)

    def backup(self) -> Backup:
        state = self._ports.items()
        text = "".join(f"port {n} {'enable' if up else 'disable'}\n" for n, up in state)
        digest = hashlib.sha256(text.encode()).hexdigest()
        return Backup(self.target.name, self.target.device.platform, self.via, text, digest)

    def apply(self, changes: ChangeSet) -> ApplyResult:
        wanted = []
        for line in changes.commands:
            m = _LINE.match(line)
            if m is None or m.group(1) not in self._ports:
                raise CommandRejected(self.target.name, "apply", line, "% unknown (toy)")
            wanted.append((m.group(1), m.group(2) == "enable"))
        for name, up in wanted:
            self._ports[name] = up
        self.switches.received.append((self.target.name, tuple(changes.commands)))
        trail.change(
            self.target,
            via=self.via,
            action=changes.action,
            commands=changes.commands,
            outcome="ok",
            duration_s=0.0,
        )
        return ApplyResult(self.target.name, changes.action, changes.commands, "", 0.0)

    def verify(
        self, expect: Expectation, *, timeout: float | None = None, action: str = "verify"
    ) -> Facts:
        facts = self.facts()
        wrong = mismatches(facts, expect)
        if wrong:
            raise VerifyError(self.target.name, action, "; ".join(wrong))
        return facts
