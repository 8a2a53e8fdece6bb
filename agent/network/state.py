"""The isolation state of devices as data: interfaces administratively down, and the rules of our
own nftables table. The same rule objects are rendered for the device and evaluated for the impact
preview, so the preview and the device cannot disagree. Pure: imports only `agent.network.paths`.

A declared flow kept through a cut takes two accepts per routing hop: its requests (client to the
service's port, any packet: a connection opens only this way) and its replies (from the service's
port back to the client), which match only packets of a connection the client opened, by the
device's connection tracking (`NftRule.reply`). A stateless reply accept would let the server host
open a connection to any port of the client, from the service's port.

The device's own traffic (in-band management of a firewall through a link a step cuts). A drop by
one interface alone (`iif` without `oif`, or `oif` without `iif`) also drops the device's own
traffic there: what arrives on `iif` for the device itself, what it sends out of `oif`. An
accept by one interface alone is a *local* exception (`NftRule.local`), for the device's own
traffic only, never for what it forwards: a local-in accept (`iif`, `daddr` the device's own
address, `dport` its port) lets the agent's requests in; its reply half is a local-out accept
(`oif`, `saddr` the device, `sport` the port: stateful like every reply accept, so the device
can open nothing toward the agent). Only a platform that can hold them gets them
(`Spec.local_exceptions`); `DeviceState.local` is the verdict on the device's own traffic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from agent.network.paths import FlowPath, PortHop, RouteHop

# count: no verdict; counts new connections (the soak gate watches reconnected zones with it)
Verdict = Literal["accept", "drop", "count"]
Method = Literal["cli", "snmp"]


@dataclass(frozen=True)
class NftRule:
    """One rule of `table inet cordon`: of its forward chain, and where it is by one interface
    alone, of the device's own traffic too (`own`; first match wins; default accept)."""

    verdict: Verdict
    iif: str | None = None
    oif: str | None = None
    saddr: str | None = None
    daddr: str | None = None
    sport: int | None = None
    dport: int | None = None
    tag: str = field(default="", compare=False)  # who asked for it (rendered as a comment)

    @property
    def reply(self) -> bool:
        """The reply half of a declared flow (an accept from a source port): it matches packets
        of a connection the client opened only, never one the server side opens (the renderer
        makes it stateful; the preview evaluates it for replies only)."""
        return self.verdict == "accept" and self.sport is not None

    @property
    def local(self) -> bool:
        """An exception for the device's own traffic (an accept by one interface alone): local
        in (`iif`: packets to the device) or local out (`oif`: packets from it); it never
        matches forwarded traffic."""
        return self.verdict == "accept" and (self.iif is None) != (self.oif is None)

    @property
    def own(self) -> bool:
        """Does the rule apply to the device's own traffic (a local exception, or a drop by one
        interface alone)?"""
        return self.local or (self.verdict == "drop" and (self.iif is None) != (self.oif is None))

    @property
    def tier(self) -> int:
        """Evaluation order: accepts of declared flows (addresses given), then counters (so a
        declared flow is never counted as suspect), then whole-zone accepts, then drops."""
        if self.verdict == "accept":
            return 0 if (self.saddr or self.daddr) else 2
        return 1 if self.verdict == "count" else 3

    def fields(self) -> tuple[str, str, str, str, int, int]:
        return (
            self.iif or "",
            self.oif or "",
            self.saddr or "",
            self.daddr or "",
            self.sport or 0,
            self.dport or 0,
        )

    def sort_key(self) -> tuple[int, str, str, str, str, int, int]:
        """Tiers first (exceptions win over cuts), then a stable order of the match fields."""
        return (self.tier, *self.fields())

    def id_key(self) -> tuple[bool | str, str, str, str, str, int, int]:
        """What identifies the rule (match and verdict); stable across releases. A reply accept
        has a kind of its own: its id is not the one of the stateless reply accept of earlier
        releases, so such a rule found on a device reads back as not ours (drift)."""
        kind: bool | str = self.verdict != "accept"
        if self.verdict == "count":
            kind = "count"
        elif self.reply:
            kind = "reply"
        return (kind, *self.fields())

    def matches(
        self,
        iif: str,
        oif: str,
        saddr: str,
        daddr: str,
        sport: int | None,
        dport: int | None,
        *,
        reply: bool = False,
    ) -> bool:
        """Does a packet match? `reply`: it belongs to a connection opened the other way (a
        reply accept matches nothing else: a packet opening a connection is never a reply)."""
        return (
            (reply or not self.reply)
            and (self.iif is None or self.iif == iif)
            and (self.oif is None or self.oif == oif)
            and (self.saddr is None or self.saddr == saddr)
            and (self.daddr is None or self.daddr == daddr)
            and (self.sport is None or self.sport == sport)
            and (self.dport is None or self.dport == dport)
        )


@dataclass(frozen=True)
class DeviceState:
    """What Cordon has done to one device: ports shut (and how), rules in its own table."""

    down: frozenset[tuple[str, Method]] = frozenset()
    rules: frozenset[NftRule] = frozenset()

    @property
    def down_interfaces(self) -> frozenset[str]:
        found: frozenset[str] | None = self.__dict__.get("_down_interfaces")
        if found is None:  # once per (frozen) state, as `_ordered`
            found = frozenset(i for i, _ in self.down)
            self.__dict__["_down_interfaces"] = found
        return found

    def ordered_rules(self) -> list[NftRule]:
        """Accepts before drops (exceptions win), each group sorted: a canonical order."""
        return list(self._ordered())

    def _ordered(self) -> tuple[NftRule, ...]:
        # sorted once per state (the state is frozen): a flow's evaluation reads it at every
        # routing hop, the plan evaluates thousands of flows (#18). Kept in the instance's
        # __dict__, outside the fields: equality, hashing and replace() see the fields only.
        found: tuple[NftRule, ...] | None = self.__dict__.get("_sorted_rules")
        if found is None:
            found = tuple(sorted(self.rules, key=NftRule.sort_key))
            self.__dict__["_sorted_rules"] = found
        return found

    def shut(self, interface: str, method: Method) -> DeviceState:
        if interface in self.down_interfaces:
            return self
        return replace(self, down=self.down | {(interface, method)})

    def reopen(self, interface: str) -> DeviceState:
        return replace(self, down=frozenset(d for d in self.down if d[0] != interface))

    def without_rules(self, drop: Callable[[NftRule], bool]) -> DeviceState:
        return replace(self, rules=frozenset(r for r in self.rules if not drop(r)))

    def cuts(self, interface: str) -> bool:
        """Is `interface` cut here (shut, or its traffic dropped by our table)?"""
        return interface in self.down_interfaces or any(
            r.verdict == "drop" and interface in (r.iif, r.oif) for r in self.rules
        )

    def with_rules(self, rules: Iterable[NftRule]) -> DeviceState:
        return replace(self, rules=self.rules | frozenset(rules))

    def forward(
        self,
        iif: str,
        oif: str,
        saddr: str,
        daddr: str,
        sport: int | None,
        dport: int | None,
        *,
        reply: bool = False,
    ) -> Verdict:
        """The verdict on a forwarded packet; `reply`: of a connection opened the other way."""
        for rule in self._ordered():
            if (
                rule.verdict != "count"
                and not rule.local
                and rule.matches(iif, oif, saddr, daddr, sport, dport, reply=reply)
            ):
                return "drop" if rule.verdict == "drop" else "accept"
        return "accept"

    def local(
        self,
        direction: Literal["in", "out"],
        interface: str,
        saddr: str,
        daddr: str,
        sport: int | None,
        dport: int | None,
        *,
        reply: bool = False,
    ) -> Verdict:
        """The verdict on the device's own traffic: a packet to it arriving on `interface`
        (`in`) or one it sends out of `interface` (`out`). Only rules by that one interface
        apply (`NftRule.own`): local exceptions first, then drops."""
        iif, oif = (interface, "") if direction == "in" else ("", interface)
        for rule in self._ordered():
            if not rule.own or (rule.iif is None) != (direction == "out"):
                continue
            if rule.matches(iif, oif, saddr, daddr, sport, dport, reply=reply):
                return "drop" if rule.verdict == "drop" else "accept"
        return "accept"


NORMAL = DeviceState()
GroupState = Mapping[str, DeviceState]


def device_state(state: GroupState, device: str) -> DeviceState:
    return state.get(device, NORMAL)


def flow_open(state: GroupState, path: FlowPath) -> bool:
    """Does the flow connect under `state`? Both the connection's opening (from the source) and
    its replies must pass."""
    for hop in path.hops:
        dev = device_state(state, hop.device)
        if isinstance(hop, PortHop):
            if hop.interface in dev.down_interfaces:
                return False
            continue
        assert isinstance(hop, RouteHop)
        if {hop.in_if, hop.out_if} & dev.down_interfaces:
            return False
        there = dev.forward(hop.in_if, hop.out_if, path.src, path.dst, None, path.port)
        back = dev.forward(hop.out_if, hop.in_if, path.dst, path.src, path.port, None, reply=True)
        if there == "drop" or back == "drop":
            return False
    return True


def allow_rules(path: FlowPath, device: str, tag: str) -> list[NftRule]:
    """Accept rules that let `path` (and its replies) through `device`'s routing hops: the
    requests, and the replies (`NftRule.reply`: stateful once rendered)."""
    out = []
    for hop in path.hops:
        if isinstance(hop, RouteHop) and hop.device == device:
            out.append(
                NftRule("accept", hop.in_if, hop.out_if, path.src, path.dst, None, path.port, tag)
            )
            out.append(
                NftRule("accept", hop.out_if, hop.in_if, path.dst, path.src, path.port, None, tag)
            )
    return out
