"""Owns what a driver may offer beyond the `Driver` protocol, as small protocols, and the one way
to ask for one (`require`): the executor and the poller name a capability, never a driver class.
Imports the driver contract's types and the error tree only; no device library, no platform.

    DeadMan             arm_revert / confirm: an on-device revert that survives losing the agent
    Counters            rule_counters: packets of each of the agent's own rules
    InterfaceCounters   interface_counters: traffic counters of named interfaces
    ReadsRuleComments   rule_comments: the comments of the agent's own rules, None when absent
    ReadsSnmp           get / walk: numeric-OID reads (the poller's interface reads use them)
    RuleTraffic         rule_traffic: packets and bytes that passed given rules of the agent's
                        own (the accepts that keep a flow: live traffic of must-survive flows)
    DecidesFlows        decide_flows: what the device itself would do with given packets (its
                        live rules evaluated, or its own policy lookup), or that it cannot tell
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from agent.drivers.base import ChangeSet, InterfaceState
from agent.errors import RunError
from agent.network.state import NftRule


@runtime_checkable
class DeadMan(Protocol):
    """A driver that can arm an on-device revert (a timer that survives losing the agent)."""

    def arm_revert(self, changes: ChangeSet, seconds: float) -> str:
        """Unless confirmed within `seconds`, the device applies `changes` by itself."""

    def confirm(self, token: str) -> bool:
        """Disarm; False if the revert already ran."""


@runtime_checkable
class Counters(Protocol):
    """A driver that reads the packet counters of the agent's own rules (nftables)."""

    def rule_counters(self) -> dict[str, int]:
        """Packets counted by each rule of `table inet cordon` that has both a `counter` and a
        `comment`, keyed by the comment (rules sharing a comment are summed); {} when the table
        is absent."""


@dataclass(frozen=True)
class IfCounters:
    """Traffic counters of one interface (IF-MIB: ifHC* of ifXTable, else 32-bit ifTable)."""

    in_octets: int
    out_octets: int
    in_ucast_pkts: int
    out_ucast_pkts: int


@runtime_checkable
class InterfaceCounters(Protocol):
    """A driver that reads interface traffic counters (SNMP)."""

    def interface_counters(self, interfaces: Sequence[str]) -> dict[str, IfCounters]:
        """Counters of each named interface (ifName or ifDescr); an unknown name raises
        `SnmpError`."""


@runtime_checkable
class ReadsRuleComments(Protocol):
    """A driver that reads back the comments of the agent's own rules (nftables)."""

    def rule_comments(self, operation: str = "read") -> tuple[str, ...] | None:
        """The comment of each rule of `table inet cordon`, in order ("" for a rule without
        one; duplicates kept), None when the table does not exist."""


@runtime_checkable
class ReadsSnmp(Protocol):
    """A driver that GETs and walks numeric OIDs (SNMP)."""

    def get(self, oids: Sequence[str]) -> dict[str, Any]:
        """{oid: value}; a missing one raises `SnmpError` (noSuchName)."""

    def walk(self, columns: Sequence[str], operation: str = "walk") -> dict[str, dict[int, Any]]:
        """Column OID -> {row index: value} for each column."""


@dataclass(frozen=True)
class Traffic:
    """What a device counted on the line(s) it holds for one of the agent's rules."""

    packets: int
    bytes: int


@runtime_checkable
class RuleTraffic(Protocol):
    """A driver that reads the packets and bytes that passed the agent's own rules, every packet
    (not only new connections): an accept that keeps a flow moves while the flow carries traffic."""

    def rule_traffic(self, rules: Sequence[NftRule]) -> list[Traffic | None]:
        """For each of `rules` (matched by what it matches and does, never by its tag), the
        packets and bytes counted on the lines the device holds for it, summed; None when the
        device holds no counted line for it (the rule is absent, or the platform renders it as
        no line of its own). One read of the device for all of them."""


@dataclass(frozen=True)
class FlowQuery:
    """A packet crossing a routing device, as a flow verification asks about it: in and out
    interfaces (the inventory's names), the 5-tuple (TCP; a port None is the client's ephemeral
    port, unknown in advance) and whether it is a reply of an established connection."""

    in_if: str
    out_if: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    reply: bool = False
    protocol: str = "tcp"


class Verdict(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    UNKNOWN = "unknown"  # the device's rules could not be evaluated for this packet (why says)


@dataclass(frozen=True)
class FlowDecision:
    verdict: Verdict
    why: str = ""  # which rule or policy decided, or why it cannot be told


@runtime_checkable
class DecidesFlows(Protocol):
    """A driver that can say what the device would do with packets, from its live state."""

    def decide_flows(self, queries: Sequence[FlowQuery]) -> list[FlowDecision]:
        """One decision per query, in order (one read of the device for all of them). A packet
        the device's rules cannot be evaluated for is UNKNOWN with the reason, never a guess."""


@runtime_checkable
class ReadsInterfaces(Protocol):
    """A driver that reads its interfaces alone (what `facts` reads with the whole configuration
    besides): a flow verification asks a device only whether a port on the path is down."""

    def interfaces(self, operation: str = "read") -> tuple[InterfaceState, ...]:
        """Every interface as the device reports it (one read). Its admin state always; its
        link (`oper_up`) may be None: not read (FortiGate reads the admin status alone here),
        never a guess."""


C = TypeVar("C")

_WHAT: dict[type, str] = {
    DeadMan: "arm an on-device revert",
    Counters: "read rule counters",
    InterfaceCounters: "read interface counters",
    ReadsRuleComments: "read the rules of its table",
    ReadsSnmp: "read SNMP objects",
    RuleTraffic: "read the traffic counters of its rules",
    DecidesFlows: "evaluate a flow",
    ReadsInterfaces: "read its interfaces alone",
}


# A capability is passed as its protocol class; typed as a callable so mypy accepts a protocol
# (it refuses abstract classes where `type[C]` is expected).
Capability = Callable[..., C]


def having(driver: object, capability: Capability[C]) -> C | None:
    """`driver` as `capability` if it offers it, else None."""
    return cast(C, driver) if isinstance(driver, cast(type, capability)) else None


def require(driver: object, capability: Capability[C]) -> C:
    """`driver` as `capability`; RunError naming the driver and what it cannot do otherwise."""
    found = having(driver, capability)
    if found is None:
        what = _WHAT.get(cast(type, capability), getattr(capability, "__name__", "?"))
        raise RunError(f"the {type(driver).__name__} driver cannot {what}")
    return found
