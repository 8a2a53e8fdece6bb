"""The device-side flow source (`device:<name>`): every device on a flow's path asked, from its
live state, what it does with the flow. For each device crossed (in parallel, one read each):

- its interfaces as it reports them (`ReadsInterfaces` where the platform reads them alone,
  else `facts`, which reads the whole configuration besides): a port of the path, or a routing
  hop's in or out interface, that is administratively down cuts the flow (CLOSED, decided by
  that device: what Cordon's isolation does; an operational state is not used, platforms report
  it for VLAN parents and sub-interfaces inconsistently);
- a routing device (a firewall: the path's `RouteHop`s) is asked what it would do with the
  flow's request and its reply (`DecidesFlows`: the nftables ruleset evaluated, FortiOS' policy
  lookup, ...). A device whose platform cannot answer says UNKNOWN ("platform cannot evaluate a
  flow"), as does a device that cannot be reached (with the error).

Concurrent checks (sister sites verifying at the same moment) read a device they share once, not
once each through its single pooled session (`Reads`): a check's read of a device is merged with
the other checks' only into a read that starts after the check asked (never an answer read
before it), and the merged read asks every packet any of them asked.

Per flow: the first device (in path order) that drops it decides CLOSED; OPEN only when every
routing device on the path accepts both directions and every interface is up; otherwise UNKNOWN,
each device saying why. A path with no routing device (switch ports only) cannot be confirmed
open by any device (UNKNOWN), only closed by a port down. Never a state the devices did not give.

Imports the evidence contract, the inventory and network models, the drivers' pool and the
platforms' capability types."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.drivers.base import Driver, InterfaceState
from agent.drivers.pool import Pool
from agent.errors import CordonError
from agent.inventory.models import Flow, Inventory
from agent.network.paths import FlowPath, PortHop, RouteHop, flow_path
from agent.platforms.capabilities import (
    DecidesFlows,
    FlowDecision,
    FlowQuery,
    ReadsInterfaces,
    Verdict,
    having,
)
from agent.verify.evidence import SESSION_WAIT_S, Evidence, Seen
from agent.verify.workers import workers

CANNOT = "platform cannot evaluate a flow"
# the threads the devices of every check are read on (kept: `workers`); 9 sites checking at once
# read a dozen devices each (merged reads of one device wait for each other, never for a queued
# one: `Reads`)
READ_THREADS = 128


@dataclass(frozen=True)
class DeviceAnswer:
    """One device's read: its interfaces, and its decision on each query asked (None: its
    platform cannot evaluate a flow)."""

    interfaces: Mapping[str, InterfaceState]
    decisions: Sequence[FlowDecision] | None


def queries_of(path: FlowPath, device: str) -> list[FlowQuery]:
    """The packets `device` routes for this flow: each routing hop's request and reply."""
    out = []
    for hop in path.hops:
        if isinstance(hop, RouteHop) and hop.device == device:
            out.append(FlowQuery(hop.in_if, hop.out_if, path.src, path.dst, None, path.port))
            out.append(
                FlowQuery(hop.out_if, hop.in_if, path.dst, path.src, path.port, None, reply=True)
            )
    return out


def _ask(queries: Sequence[FlowQuery]) -> Callable[[Driver], DeviceAnswer]:
    def read(d: Driver) -> DeviceAnswer:
        reader = having(d, ReadsInterfaces)
        found = reader.interfaces("decide") if reader is not None else d.facts().interfaces
        interfaces = {i.name: i for i in found}
        decider = having(d, DecidesFlows)
        if decider is None or not queries:
            return DeviceAnswer(interfaces, None if decider is None else [])
        return DeviceAnswer(interfaces, decider.decide_flows(queries))

    return read


@dataclass
class _Batch:
    """One read of a device, for every check that joined it before it started."""

    queries: list[FlowQuery] = field(default_factory=list)
    done: bool = False
    answer: DeviceAnswer | None = None
    error: CordonError | None = None


class Reads:
    """The reads of one device, merged across concurrent checks (group commit): a check joins
    the read that has not started yet (adding its packets to it), or opens it; the first check
    of a read not yet started leads it as soon as no read of the device is running, the others
    wait for its answer. A read running when a check asks is never its answer (it started
    before the check, so it may predate the change the check verifies): the check waits for the
    next one. `read(queries)` reads the device once (its interfaces, its decision on each)."""

    def __init__(self, read: Callable[[Sequence[FlowQuery]], DeviceAnswer]) -> None:
        self._read = read
        self._cond = threading.Condition()
        self._open: _Batch | None = None  # the read not started yet, gathering checks
        self._running = False
        self.reads = 0  # reads made (for the tests and benchmarks)

    def ask(self, queries: Sequence[FlowQuery]) -> DeviceAnswer:
        """The device's interfaces and its decision on each of `queries`, in their order,
        from a read that started after this call (raises the read's CordonError)."""
        with self._cond:
            if self._open is None:
                self._open = _Batch()
            batch = self._open
            batch.queries += [q for q in queries if q not in batch.queries]
            while not batch.done and (self._running or self._open is not batch):
                self._cond.wait()
            lead = not batch.done
            if lead:
                self._open, self._running = None, True
                self.reads += 1
        if lead:
            try:
                batch.answer = self._read(list(batch.queries))
            except CordonError as exc:
                batch.error = exc
            finally:
                with self._cond:
                    batch.done, self._running = True, False
                    self._cond.notify_all()
        if batch.error is not None:
            raise batch.error
        assert batch.answer is not None  # done without an error: answered
        got = batch.answer
        if got.decisions is None:
            return got
        return DeviceAnswer(
            got.interfaces, [got.decisions[batch.queries.index(q)] for q in queries]
        )


class DeviceDecisions:
    """The `FlowSource` of the devices' own decisions (see the module's docstring)."""

    name = "device"

    def __init__(self, inv: Inventory, pool: Pool) -> None:
        self.inv, self.pool = inv, pool
        self._reads: dict[str, Reads] = {}
        self._lock = threading.Lock()

    def reads_of(self, device: str) -> Reads:
        """`device`'s merged reads (made on first use)."""
        with self._lock:
            found = self._reads.get(device)
            if found is None:

                def read(queries: Sequence[FlowQuery]) -> DeviceAnswer:
                    return self.pool.run(device, _ask(queries), wait=SESSION_WAIT_S)

                found = self._reads[device] = Reads(read)
            return found

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        del site, expected  # the devices are asked about the flows as they are
        paths = {f.name: flow_path(self.inv, f) for f in flows}
        asks: dict[str, list[FlowQuery]] = {}
        for p in paths.values():
            for hop in p.hops:
                asks.setdefault(hop.device, [])
        for p in paths.values():
            for device in list(asks):
                asks[device] += [q for q in queries_of(p, device) if q not in asks[device]]
        answers: dict[str, DeviceAnswer | str] = {}

        def one(device: str) -> None:
            try:
                answers[device] = self.reads_of(device).ask(asks[device])
            except CordonError as exc:
                answers[device] = exc.message

        if asks:
            list(workers("cordon-dec", READ_THREADS).map(one, sorted(asks)))
        return [ev for f in flows for ev in self._flow(paths[f.name], asks, answers)]

    def _flow(
        self,
        path: FlowPath,
        asks: Mapping[str, Sequence[FlowQuery]],
        answers: Mapping[str, DeviceAnswer | str],
    ) -> list[Evidence]:
        name = path.flow.name
        unknown: list[Evidence] = []
        accepted: list[str] = []
        for device in dict.fromkeys(h.device for h in path.hops):
            src = f"{self.name}:{device}"
            got = answers.get(device)
            if not isinstance(got, DeviceAnswer):
                unknown.append(Evidence(name, src, Seen.UNKNOWN, f"could not ask: {got}"))
                continue
            interfaces = _with_trunks(got.interfaces)
            down = _down(path, device, interfaces)
            if down is not None:
                return [Evidence(name, src, Seen.CLOSED, down)]
            unsure: list[str] = []
            missing = _missing(path, device, interfaces)
            if missing:
                unsure.append(f"interface(s) {', '.join(missing)} not reported by the device")
            routes = queries_of(path, device)
            if routes and got.decisions is None:
                unsure.append(CANNOT)
            elif routes and got.decisions is not None:
                asked = list(asks[device])
                verdicts = [got.decisions[asked.index(q)] for q in routes]
                drop = next((v for v in verdicts if v.verdict is Verdict.DROP), None)
                if drop is not None:
                    return [Evidence(name, src, Seen.CLOSED, drop.why)]
                unsure += [v.why for v in verdicts if v.verdict is Verdict.UNKNOWN]
            if unsure:
                unknown.append(Evidence(name, src, Seen.UNKNOWN, "; ".join(unsure)))
            elif routes:
                accepted.append(src)  # (switch ports only, all up: decides nothing)
        if unknown:
            return unknown
        if not accepted:
            why = "no device on the path evaluates flows (switch ports only)"
            return [Evidence(name, self.name, Seen.UNKNOWN, why)]
        return [Evidence(name, src, Seen.OPEN) for src in accepted]


def _down(path: FlowPath, device: str, interfaces: Mapping[str, InterfaceState]) -> str | None:
    """Why the device cuts the flow by an interface down (None when every one is up)."""
    for hop in path.hops:
        if hop.device != device:
            continue
        names = (hop.interface,) if isinstance(hop, PortHop) else (hop.in_if, hop.out_if)
        for n in names:
            i = interfaces.get(n)
            if i is None:
                continue  # said by `_missing`
            if not i.admin_up:
                return f"interface {n} is administratively down"
    return None


def _missing(path: FlowPath, device: str, interfaces: Mapping[str, InterfaceState]) -> list[str]:
    names = [
        n
        for hop in path.hops
        if hop.device == device
        for n in ((hop.interface,) if isinstance(hop, PortHop) else (hop.in_if, hop.out_if))
    ]
    return [n for n in dict.fromkeys(names) if n not in interfaces]


def _with_trunks(interfaces: Mapping[str, InterfaceState]) -> dict[str, InterfaceState]:
    """The interfaces as reported, plus each trunk reported only as its VLAN legs (`lan0.140`,
    `lan0.180`, ... with no `lan0`: a kernel without 802.1Q, as on the twin) as one interface,
    administratively up when any leg is."""
    out = dict(interfaces)
    legs: dict[str, list[InterfaceState]] = {}
    for name, state in interfaces.items():
        parent, dot, vid = name.rpartition(".")
        if dot and vid.isdigit() and parent not in interfaces:
            legs.setdefault(parent, []).append(state)
    for parent, states in legs.items():
        out[parent] = InterfaceState(parent, admin_up=any(s.admin_up for s in states))
    return out
