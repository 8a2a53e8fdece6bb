"""Which declared flows an isolation cuts: pure functions over the inventory (no device, no twin).

The seed of the engine's impact preview; the twin tests use it to know what a cut must close.
Imports only `agent.inventory.models`.
"""

from __future__ import annotations

from agent.inventory.models import Endpoint, Flow, Inventory


def hosts_on_port(inv: Inventory, device: str, interface: str) -> set[str]:
    """'site/zone/host' keys of the hosts cabled to `device:interface`."""
    out = set()
    for site in inv.sites:
        for zone in site.zones:
            for host in zone.hosts:
                if host.port is not None and (host.port.device, host.port.interface) == (
                    device,
                    interface,
                ):
                    out.add(f"{site.name}/{zone.name}/{host.name}")
    return out


def _key(ep: Endpoint) -> str:
    return f"{ep.site}/{ep.zone}/{ep.host}"


def flows_touching_hosts(inv: Inventory, hosts: set[str]) -> list[Flow]:
    """Flows whose source or destination is one of `hosts`."""
    return [f for f in inv.flows if _key(f.source) in hosts or _key(f.destination) in hosts]


def flows_via_access_port(inv: Inventory, device: str, interface: str) -> list[Flow]:
    """Flows that a shutdown of the access port `device:interface` cuts."""
    return flows_touching_hosts(inv, hosts_on_port(inv, device, interface))
