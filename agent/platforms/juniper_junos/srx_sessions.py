"""Owns which flow sessions a Junos SRX cut clears. An SRX looks a policy up for a session's first
packet only, so a session open before a cut goes on through it. `security policies
policy-rematch` does not help Cordon: Junos re-evaluates the sessions of a policy that is
modified or deleted (Juniper, `policy-rematch`: "For every session associated with the policy,
the device reevaluates the policy lookup"), and Cordon's cut ADDS deny policies before the site's
permit, which it leaves untouched. So after the commit is read back, the driver clears sessions
(`clear security flow session source-prefix P` / `destination-prefix P`, the RPC
`<clear-flow-session>`), by prefix, chosen here from the change's own lines and the device's
interfaces in the inventory:

- only the deny policies a change adds (a name the committed configuration did not hold before):
  a rollback, an opening or a re-run clears nothing;
- a deny policy naming addresses clears those prefixes (source as source, destination as
  destination);
- one naming interfaces only clears the connected subnets of the interfaces it names, or of
  every interface for a side left `any`, as sources and as destinations;
- never cleared: an address a permit policy of the change names (a must-survive flow's ends), nor
  the device's own addresses: their subnets are cleared as the fewest prefixes that leave them
  out (`address_exclude`).

Every prefix is a parsed IPv4Network before it becomes XML. Pure: imports this folder's SRX
renderer."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agent.platforms.juniper_junos import srx_render

Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class Clear:
    """The prefixes whose sessions a change clears, and the must-survive ends it leaves."""

    prefixes: tuple[Net, ...]
    kept: tuple[ipaddress.IPv4Address, ...] = ()

    def rpcs(self) -> list[tuple[str, str]]:
        """(RPC, the CLI command it stands for), sources then destinations."""
        out = []
        for side in ("source-prefix", "destination-prefix"):
            for p in self.prefixes:
                out.append(
                    (
                        f"<clear-flow-session><{side}>{p}</{side}></clear-flow-session>",
                        f"clear security flow session {side} {p}",
                    )
                )
        return out

    def summary(self) -> str:
        out = f"flow sessions cleared from and to {len(self.prefixes)} prefix(es)"
        if self.kept:
            out += f"; kept (a must-survive flow's end): {', '.join(map(str, self.kept))}"
        return out


def _cover(nets: Iterable[Net], keep: set[ipaddress.IPv4Address]) -> list[Net]:
    """The fewest prefixes covering `nets` without any address of `keep`."""
    out: list[Net] = []
    for net in ipaddress.collapse_addresses(nets):
        parts = [net]
        for host in sorted(keep):
            h = Net(f"{host}/32")
            nxt: list[Net] = []
            for p in parts:
                nxt += list(p.address_exclude(h)) if h.subnet_of(p) else [p]
            parts = nxt
        out += parts
    return sorted(ipaddress.collapse_addresses(out))


def plan(
    lines: Sequence[str],
    before: str,
    interfaces: Mapping[str, ipaddress.IPv4Interface | None],
) -> Clear:
    """The sessions to clear for script `lines` (zone-free, `srx_render`) on a device whose
    committed Cordon statements were `before` and whose interfaces (inventory name -> address)
    are `interfaces`. ValueError for a line the renderer would not write, or a policy naming an
    address the change does not define."""
    nets: dict[str, Net] = {}
    policies = []
    for ln in lines:
        kind = srx_render.check_line(ln)
        w = ln.split()
        if kind == "address":
            nets[w[1]] = Net(w[2])
        elif kind == "policy":
            policies.append(w)

    def net(name: str) -> Net | None:
        if name == srx_render.ANY:
            return None
        if name not in nets:
            raise ValueError(f"policy address {name!r} is not defined by this change")
        return nets[name]

    units = {srx_render.unit_name(n): a for n, a in interfaces.items() if a is not None}
    own = {a.ip for a in units.values()}
    keep: set[ipaddress.IPv4Address] = set()
    cleared: list[Net] = []
    # policy NAME from FRM to TO match SRC DST APP then ACT
    for w in policies:
        if w[-1] == "permit":
            for n in (net(w[7]), net(w[8])):
                if n is not None and n.prefixlen == 32:
                    keep.add(n.network_address)
    for w in policies:
        if w[-1] != "deny" or f" policy {w[1]} " in f" {before} ":
            continue
        named = [n for n in (net(w[7]), net(w[8])) if n is not None]
        if named:
            cleared += named
            continue
        sides = [w[3], w[5]]
        for unit, addr in sorted(units.items()):
            if srx_render.ANY in sides or unit in sides:
                cleared.append(addr.network)
    kept = tuple(sorted(h for h in keep if any(h in n for n in cleared)))
    return Clear(prefixes=tuple(_cover(cleared, keep | own)), kept=kept)
