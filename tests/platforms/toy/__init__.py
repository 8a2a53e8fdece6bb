"""toy_switch: a platform that lives only in this test folder, registered by the test through
`agent.platforms.registry.register(toy.spec(world))`. Its renderer writes `port <if> disable`
lines, its driver talks to `Switches`, scripted in-memory devices; nothing outside this folder
knows it."""

from __future__ import annotations

from agent.drivers.base import Driver, Target, Timeouts
from agent.platforms.spec import Spec
from tests.platforms.toy.driver import Switches, ToyDriver
from tests.platforms.toy.render import port_lines

NAME = "toy_switch"


def spec(switches: Switches) -> Spec:
    def driver(target: Target, timeouts: Timeouts | None) -> Driver:
        return ToyDriver(target, switches)

    return Spec(name=NAME, driver=driver, shuts_by="cli", shut_lines=port_lines)
