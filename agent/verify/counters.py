"""Live traffic on the accept rules that keep declared flows through a cut: a flow source
(`counters:<device>`) and the judgement the poller's alarm shares with it.

A declared flow kept through a cut has accept rules on the firewalls it is routed through
(`agent.network.state.allow_rules`: its requests, and its replies). Every such rule counts what
passes it (nftables: its `counter`; see the platform's `RuleTraffic`). Two reads of those counts
tell whether the flow carried traffic between them:

- **moved**: every counted rule of the flow counted more packets: traffic passed the firewall
  both ways (requests and replies), so the flow is OPEN;
- **still**: none moved: no traffic seen. Silence is not proof of a cut (the application may be
  quiet): the source says UNKNOWN, the poller's alarm (must-survive flows stream continuously)
  says the flow stopped;
- **one way**: some moved, some not (requests pass, no reply comes back, or the reverse): not
  proof of an open flow (UNKNOWN), and an alarm for a must-survive flow;
- **uncounted**: the device holds no counted rule of the flow in both reads (no rule, or a
  platform that renders it as no line of its own): UNKNOWN;
- **reset**: a counter went down, or a rule appeared or vanished between the reads (the table
  was reloaded): no verdict.

Counters never say CLOSED: a firewall that passes no packet of a flow does not show the flow is
cut (nothing may have been sent).

Wiring (a composition root): `counter_sources(inv, pool)` gives one source per firewall that
routes a declared flow; a source asked about flows none of which its device routes answers at
once with nothing. With a window (`window_s` > 0) the others read, wait the window and read again;
with `window_s=0` (what the run's gates use: a verify step must not wait) they read once and
compare with their previous reading of the same rules (at least `MIN_SINCE_S` old), kept in the
source: the first check of a rule only takes its reading (UNKNOWN, saying so), and a check whose
rules were all read less than `MIN_SINCE_S` ago does not read the device (UNKNOWN, too soon).

Imports the evidence contract, the inventory, the network model, the drivers' pool and the
platforms' capability protocols; never a platform's module, the twin or the executor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

from agent.drivers.base import Driver
from agent.drivers.pool import Pool
from agent.errors import CordonError, DeviceError
from agent.inventory.models import Flow, Inventory
from agent.network.paths import RouteHop, flow_path
from agent.network.state import NftRule, allow_rules
from agent.platforms import registry
from agent.platforms.capabilities import RuleTraffic, Traffic, having
from agent.verify.evidence import SESSION_WAIT_S, Evidence, Seen

Reading = tuple[Traffic | None, ...]  # one entry per counting rule of a flow, in order
ReadTraffic = Callable[[Sequence[NftRule]], list[Traffic | None]]

DEFAULT_WINDOW_S = 3.0
MIN_SINCE_S = 1.0  # without a window: a previous reading younger than this proves nothing


class Movement(StrEnum):
    MOVED = "moved"
    STILL = "still"
    ONE_WAY = "one way"
    UNCOUNTED = "uncounted"
    RESET = "reset"


@dataclass(frozen=True)
class Judgement:
    movement: Movement
    packets: int = 0  # packets counted between the reads, every rule of the flow together
    bytes: int = 0
    detail: str = ""


def judge(before: Reading, after: Reading) -> Judgement:
    """How a flow's counting rules moved between two reads of them (same rules, same order)."""
    if len(before) != len(after):
        raise ValueError("two readings of different rules")
    if all(b is None and a is None for b, a in zip(before, after, strict=True)):
        return Judgement(Movement.UNCOUNTED, detail="no counted rule of it on the device")
    if any((b is None) != (a is None) for b, a in zip(before, after, strict=True)):
        return Judgement(Movement.RESET, detail="its rules changed between the two reads")
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    if any(a.packets < b.packets or a.bytes < b.bytes for b, a in pairs):
        return Judgement(Movement.RESET, detail="a counter went down (the rules were reloaded)")
    packets = sum(a.packets - b.packets for b, a in pairs)
    octets = sum(a.bytes - b.bytes for b, a in pairs)
    moved = [a.packets > b.packets for b, a in pairs]
    if all(moved):
        return Judgement(Movement.MOVED, packets, octets, f"{packets} packets, {octets} bytes")
    if not any(moved):
        return Judgement(Movement.STILL, detail="no packet on its accept rules")
    return Judgement(
        Movement.ONE_WAY,
        packets,
        octets,
        f"{packets} packets on {sum(moved)} of its {len(moved)} accept rules only "
        "(traffic one way, none the other)",
    )


def flow_rules(inv: Inventory, flow: Flow, device: str) -> tuple[NftRule, ...]:
    """The accept rules Cordon would install on `device` to keep `flow` through a cut (its
    requests and replies on each of its routing hops there); () when the flow is not routed
    through `device`. Matched on the device by what they match, whatever step tagged them."""
    return tuple(allow_rules(flow_path(inv, flow), device, ""))


def routed_devices(inv: Inventory, flows: Sequence[Flow]) -> list[str]:
    """The devices holding packet rules that route at least one of `flows`, in inventory order."""
    on_path = {h.device for f in flows for h in flow_path(inv, f).hops if isinstance(h, RouteHop)}
    return [
        dev.name
        for _, dev in inv.devices()
        if dev.name in on_path and registry.platform(dev.platform).rules_by is not None
    ]


def read_traffic(device: str, rules: Sequence[NftRule], d: Driver) -> list[Traffic | None]:
    """`rules`' traffic through `device`'s pooled driver; a driver without the capability raises
    DeviceError saying so (the source turns it into UNKNOWN)."""
    reader = having(d, RuleTraffic)
    if reader is None:
        raise DeviceError(
            device,
            "traffic",
            f"the {type(d).__name__} driver cannot read the traffic counters of its rules",
        )
    return reader.rule_traffic(rules)


class CounterSource:
    """`counters:<device>`: reads the counters of the flows' accept rules on `device`, waits
    `window_s`, reads them again, and judges each flow routed through `device` (a flow that is
    not is left out: this source has nothing to say about it)."""

    def __init__(
        self,
        inv: Inventory,
        device: str,
        read: ReadTraffic,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if window_s < 0:
            raise ValueError("window_s must not be negative")
        self.inv = inv
        self.device = device
        self.read = read
        self.window_s = window_s
        self.sleep = sleep
        self.clock: Callable[[], float] = time.monotonic
        # without a window: each rule's last reading and when it was taken
        self._last: dict[NftRule, tuple[Traffic | None, float]] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"counters:{self.device}"

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        by_flow = {f.name: flow_rules(self.inv, f, self.device) for f in flows}
        by_flow = {name: rules for name, rules in by_flow.items() if rules}
        if not by_flow:
            return []
        rules = [r for rs in by_flow.values() for r in rs]
        if self.window_s == 0:
            return self._since_last(by_flow, rules)
        try:
            first = self.read(rules)
            self.sleep(self.window_s)
            second = self.read(rules)
        except CordonError as exc:
            why = f"counters not read on {self.device}: {exc.message}"
            return [Evidence(name, self.name, Seen.UNKNOWN, why) for name in by_flow]
        if len(first) != len(rules) or len(second) != len(rules):
            raise DeviceError(self.device, "traffic", "answered for other rules than asked")
        out: list[Evidence] = []
        i = 0
        for name, rs in by_flow.items():
            before, after = tuple(first[i : i + len(rs)]), tuple(second[i : i + len(rs)])
            i += len(rs)
            out.append(self.evidence(name, judge(before, after)))
        return out

    def _since_last(
        self, by_flow: Mapping[str, tuple[NftRule, ...]], rules: Sequence[NftRule]
    ) -> list[Evidence]:
        """One read, judged against this source's previous reading of the same rules. When every
        rule's previous reading is younger than MIN_SINCE_S the device is not read at all (the
        read could neither be compared nor replace those readings): UNKNOWN at once."""
        with self._lock:
            young = [self._last.get(r) for r in rules]
        if all(p is not None for p in young):
            age = self.clock() - min(p[1] for p in young if p is not None)
            if age < MIN_SINCE_S:
                return [self._too_soon(name, age) for name in by_flow]
        try:
            now_read = self.read(rules)
        except CordonError as exc:
            why = f"counters not read on {self.device}: {exc.message}"
            return [Evidence(name, self.name, Seen.UNKNOWN, why) for name in by_flow]
        if len(now_read) != len(rules):
            raise DeviceError(self.device, "traffic", "answered for other rules than asked")
        now = self.clock()
        with self._lock:
            prev = [self._last.get(r) for r in rules]
            for r, t in zip(rules, now_read, strict=True):
                if (p := self._last.get(r)) is None or now - p[1] >= MIN_SINCE_S:
                    self._last[r] = (t, now)
        out: list[Evidence] = []
        i = 0
        for name, rs in by_flow.items():
            before_at = prev[i : i + len(rs)]
            after = tuple(now_read[i : i + len(rs)])
            i += len(rs)
            if any(p is None for p in before_at):
                out.append(
                    Evidence(
                        name,
                        self.name,
                        Seen.UNKNOWN,
                        f"first reading of its counters on {self.device}: compared at the next "
                        "check",
                    )
                )
                continue
            age = now - max(p[1] for p in before_at if p is not None)
            if age < MIN_SINCE_S:
                out.append(self._too_soon(name, age))
                continue
            before = tuple(p[0] for p in before_at if p is not None)
            out.append(self.evidence(name, judge(before, after), age))
        return out

    def _too_soon(self, flow: str, age: float) -> Evidence:
        why = f"counters on {self.device} read {age:.1f} s ago: too soon to compare"
        return Evidence(flow, self.name, Seen.UNKNOWN, why)

    def evidence(self, flow: str, j: Judgement, window: float | None = None) -> Evidence:
        where = f"on {self.device} in {self.window_s if window is None else window:.3g} s"
        if j.movement is Movement.MOVED:
            return Evidence(flow, self.name, Seen.OPEN, f"traffic both ways {where}: {j.detail}")
        if j.movement is Movement.STILL:
            return Evidence(
                flow, self.name, Seen.UNKNOWN, f"no traffic seen {where} (silence is not a cut)"
            )
        return Evidence(flow, self.name, Seen.UNKNOWN, f"{j.detail} ({where})")


def counter_sources(
    inv: Inventory, pool: Pool, *, window_s: float = DEFAULT_WINDOW_S
) -> list[CounterSource]:
    """One `counters:<device>` source per device that holds packet rules and routes a declared
    flow, reading through `pool` (a device whose driver cannot read its rules' traffic answers
    UNKNOWN, saying so)."""

    def reader(device: str) -> ReadTraffic:
        return lambda rules: pool.run(
            device, partial(read_traffic, device, rules), wait=SESSION_WAIT_S
        )

    return [
        CounterSource(inv, dev, reader(dev), window_s=window_s)
        for dev in routed_devices(inv, inv.flows)
    ]
