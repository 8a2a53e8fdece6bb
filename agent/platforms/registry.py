"""Owns the one map from an inventory platform (and from a cross-platform method) to its `Spec`,
and choosing a driver through it (`driver_for`, `one_shot`). Registering a platform is one
`register(spec)` call (built-ins: the list below); nothing else changes. Registering a platform
also lets inventories name it (`agent.inventory.platforms`, the name set the inventory's checks
read: the inventory is a layer below and cannot ask here), and importing this module registers the
built-ins, so they are known before any inventory is checked.
Imports `agent.inventory.platforms` and the platform folders' registrations only: a platform's
renderers and parsers load at their first call (`agent.platforms.lazy`), its device library when
a driver is made, and its twin module only when the lab asks for it (`twin`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from agent.drivers.base import Driver, Target, Timeouts, Via
from agent.errors import DeviceError, PlanError
from agent.inventory import platforms as inventory_platforms
from agent.platforms import (
    aruba_aoscx,
    cisco_ios,
    cisco_iosxe,
    fortigate,
    juniper_junos,
    linux_nftables,
    snmp,
    stormshield,
)
from agent.platforms.spec import Rules, Spec

_lock = threading.Lock()
_platforms: dict[str, Spec] = {}
_shared: dict[str, Spec] = {}  # methods any device with their settings may use (snmp)


def register(spec: Spec, *, shared: bool = False) -> None:
    """Make `spec` the implementation of platform `spec.name` (or, `shared`, of a method every
    platform may use). Registering a name twice is refused: `unregister` it first."""
    with _lock:
        table = _shared if shared else _platforms
        if spec.name in table:
            raise ValueError(f"platform {spec.name} is already registered")
        if not shared:  # inventories may now name it (refuses a malformed name)
            inventory_platforms.admit(spec.name, kernel_names=spec.kernel_names)
        table[spec.name] = spec


def unregister(name: str) -> None:
    """Forget platform `name` (a test's toy platform, when the test ends)."""
    with _lock:
        if _platforms.pop(name, None) is not None:
            inventory_platforms.withdraw(name)
        _shared.pop(name, None)


def platform(name: str) -> Spec:
    """The spec of platform `name`; PlanError naming it when none is registered."""
    found = _platforms.get(str(name))
    if found is None:
        raise PlanError(
            f"no platform {name!s} is registered",
            hint=f"registered platforms: {', '.join(sorted(_platforms))}",
        )
    return found


def shared(method: str) -> Spec | None:
    """The spec of a cross-platform method (`snmp`), None if `method` is not one."""
    return _shared.get(method)


def via(method: str) -> Via:
    """How a change made by playbook method `method` reaches its device: over a cross-platform
    method's own transport (`snmp`), else over the device platform's session (`ssh`)."""
    found = _shared.get(method)
    return found.via if found is not None else "ssh"


def methods() -> list[str]:
    """The cross-platform methods (`snmp`), in registration order."""
    return list(_shared)


def holds_rules(name: str) -> bool:
    """Does platform `name` hold packet rules? False for a platform not registered."""
    found = _platforms.get(str(name))
    return found is not None and found.rules is not None


def rules(method: str) -> Rules | None:
    """How packet rules changed by `method` (`nft`) are held, None if `method` changes none."""
    return next((s.rules for s in _platforms.values() if s.rules_by == method), None)


def twin(name: str) -> ModuleType | None:
    """The module that starts the twin device of platform (or shared method) `name`, imported
    now (only the lab asks: device platforms import no twin); None if it has none."""
    found = _platforms.get(str(name)) or _shared.get(str(name))
    if found is None or found.twin is None:
        return None
    return importlib.import_module(found.twin)


def names(*, holds_rules: bool = False, shuts_by: str | None = None) -> list[str]:
    """Registered platform names (in registration order), those holding packet rules, or those
    shutting interfaces by `shuts_by`."""
    return [
        n
        for n, s in _platforms.items()
        if (not holds_rules or s.rules_by is not None)
        and (shuts_by is None or s.shuts_by == shuts_by)
    ]


def driver_for(target: Target, timeouts: Timeouts | None = None, via: Via = "ssh") -> Driver:
    """A new, unconnected driver for `target` over `via` (ssh: the platform's own driver)."""
    for spec in _shared.values():
        if spec.via == via:
            return spec.driver(target, timeouts)
    found = _platforms.get(str(target.device.platform))
    if found is None or found.via != via:
        raise DeviceError(
            target.name, "connect", f"no driver for platform {target.device.platform} over {via}"
        )
    return found.driver(target, timeouts)


@contextmanager
def one_shot(
    target: Target, timeouts: Timeouts | None = None, via: Via = "ssh"
) -> Iterator[Driver]:
    """A connected driver for one use (the CLI's way): closed on exit, whatever happens."""
    driver = driver_for(target, timeouts, via)
    try:
        driver.connect()
        yield driver
    finally:
        driver.close()


for _spec in (
    linux_nftables.SPEC,
    cisco_ios.SPEC,
    fortigate.SPEC,
    stormshield.SPEC,
    aruba_aoscx.SPEC,
    cisco_iosxe.SPEC,
    juniper_junos.SPEC,
    juniper_junos.SRX_SPEC,
):
    register(_spec)
register(snmp.SPEC, shared=True)
