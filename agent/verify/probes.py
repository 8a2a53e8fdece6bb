"""Flow verification by the sites' probe points (#15): the only source that proves a flow end to
end, by opening it. A `ProbeSource` (`probe:<id>`) orders its probe point (`agent.probe`, over
mutual TLS, both certificates pinned) to open the declared flows it was asked about and that the
inventory says it tests, and maps what the network answered to evidence:

- connected: OPEN;
- refused, timed out, unreachable: CLOSED, with the answer and its timing in `detail`;
- the probe could not try (its own address or routes), or cannot be reached or authenticated:
  UNKNOWN, naming why (never a guess).

Its limit, said in every piece of evidence: the connection comes from the probe's address in the
flow's source zone, not from the flow's source host (the plan mirrors each kept flow's accepts for
that address, `agent.engine.plan.probe_tag`; a rule that treats the real host differently from
the probe is not seen). And a probe leg that is down would see every flow as closed: a CLOSED
from a leg where nothing connected in the same run never confirms a cut (UNKNOWN); it still
contradicts a flow expected open (a false alarm beats a silent failure).

`probe_sources(inv)` is what a composition root calls; `health(inv)` says which probes are
alive. Imports the inventory, the probe's client side, `agent.secrets` and `agent.errors`."""

from __future__ import annotations

import math
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ProbeError
from agent.inventory.models import Flow, Inventory, ProbePoint, Site
from agent.probe import channel, client
from agent.probe.protocol import Attempt, Order, OrderError, Outcome, Result, result_from
from agent.secrets import check_file, ref_path
from agent.verify.evidence import Evidence, FlowSource, Seen

TIMEOUT_S = 2.0  # a flow's connect timeout: a drop shows as this long a wait
WORKERS = 16  # the probe's parallel attempts (agent.probe.tcp)
_PIN_LINE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)\s+(?P<pin>sha256:[0-9a-f]{64})\s*$")


def pin_of(inv: Inventory, probe: ProbePoint) -> str | None:
    """The probe's pinned certificate: inline, else its id's line in the group tls_pins file."""
    if probe.control.certificate is not None:
        return probe.control.certificate
    if inv.group.tls_pins is None:
        return None
    try:
        text = (Path(inv.path).parent / inv.group.tls_pins).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        m = _PIN_LINE.match(line.strip())
        if m is not None and m.group("name") == probe.id:
            return m.group("pin")
    return None


def client_context(inv: Inventory) -> ssl.SSLContext:
    """The daemon's TLS identity toward probe points (group.probe_identity)."""
    ident = inv.group.probe_identity
    if ident is None:
        raise ProbeError(
            "the inventory declares no group.probe_identity: the daemon has no certificate "
            "to show probe points",
            hint="make one with `cordon probe keygen` and reference it under group",
        )
    base = Path(inv.path).parent
    if not ident.key.startswith("file:"):
        raise ProbeError("group.probe_identity.key must be a 'file:' reference (TLS reads a file)")
    key = ref_path(ident.key, base)
    check_file(key, what="group.probe_identity.key")
    return channel.client_context(base / ident.certificate, key)


@dataclass(frozen=True)
class ProbeSource:
    """One probe point as a `FlowSource`."""

    inv: Inventory
    site_name: str
    probe: ProbePoint
    timeout_s: float = TIMEOUT_S
    connect: client.Connect = socket.create_connection

    @property
    def name(self) -> str:
        return f"probe:{self.probe.id}"

    def target(self) -> client.ProbeAddress:
        c = self.probe.control
        return client.ProbeAddress(
            self.probe.id, str(c.address), c.port, pin_of(self.inv, self.probe)
        )

    def attempts(self, site: str, flows: Sequence[Flow]) -> list[tuple[Flow, Attempt]]:
        """The flows of `flows` this probe tests, as attempts from its leg in the source zone
        (whatever `site` the gate acts on: a flow from this probe's site to that one counts)."""
        out = []
        for flow in flows:
            leg = self.probe.leg(flow.source.zone)
            host = self.inv.host(flow.destination)
            dst_site = self.inv.site(flow.destination.site)
            dst_zone = dst_site.zone(flow.destination.zone) if dst_site else None
            svc = (
                host.service(flow.destination.service)
                if host and flow.destination.service
                else None
            )
            if (
                flow.name not in self.probe.flows
                or flow.source.site != self.site_name
                or leg is None
                or host is None
                or dst_zone is None
                or svc is None
            ):
                continue
            out.append(
                (
                    flow,
                    Attempt(
                        flow.name, str(leg.address), str(host.address), svc.port, self.timeout_s
                    ),
                )
            )
        return out

    def check(
        self, site: str, flows: Sequence[Flow], expected: Mapping[str, bool]
    ) -> list[Evidence]:
        todo = self.attempts(site, flows)
        if not todo:
            return []
        order = Order("run", tuple(a for _, a in todo))
        rounds = math.ceil(len(todo) / WORKERS)
        try:
            answer = client.ask(
                self.target(),
                order,
                client_context(self.inv),
                timeout=self.timeout_s * rounds + 5.0,
                connect=self.connect,
            )
            results = {r.flow: r for r in (result_from(x) for x in answer.get("results", []))}
        except (ProbeError, OrderError) as exc:
            why = f"probe unreachable or refused: {exc}"
            return [Evidence(f.name, self.name, Seen.UNKNOWN, why) for f, _ in todo]
        return evidence_from(self.name, self.inv, todo, results, expected)


def evidence_from(
    source: str,
    inv: Inventory,
    todo: Sequence[tuple[Flow, Attempt]],
    results: Mapping[str, Result],
    expected: Mapping[str, bool],
) -> list[Evidence]:
    """What a probe's results say of each flow (see the module's rules)."""
    live_legs = {r.source for r in results.values() if r.outcome is Outcome.CONNECTED}
    out = []
    for flow, attempt in todo:
        real = inv.host(flow.source)
        limit = (
            f"from probe address {attempt.source}, not the flow's source host "
            f"{real.address if real else flow.source}"
        )
        r = results.get(flow.name)
        if r is None or (r.source, r.destination, r.port) != (
            attempt.source,
            attempt.destination,
            attempt.port,
        ):
            out.append(
                Evidence(flow.name, source, Seen.UNKNOWN, f"the probe did not answer it; {limit}")
            )
            continue
        told = f"{r.outcome.value} in {r.elapsed_ms:g} ms" + (f" ({r.detail})" if r.detail else "")
        if r.outcome is Outcome.CONNECTED:
            seen = Seen.OPEN
        elif r.outcome is Outcome.ERROR:
            seen = Seen.UNKNOWN
        elif r.source not in live_legs and not expected.get(flow.name, False):
            seen = Seen.UNKNOWN
            told += (
                "; nothing connected from this leg in this run, so its leg may be down: "
                "a closed result from it proves no cut"
            )
        else:
            seen = Seen.CLOSED
        out.append(Evidence(flow.name, source, seen, f"{told}; {limit}"))
    return out


def probe_sources(
    inv: Inventory,
    *,
    timeout_s: float = TIMEOUT_S,
    connect: client.Connect = socket.create_connection,
) -> list[FlowSource]:
    """One `probe:<id>` source per probe point the inventory declares (none: an empty list)."""
    return [
        ProbeSource(inv, site.name, probe, timeout_s, connect)
        for site in inv.sites
        for probe in site.probes
    ]


@dataclass(frozen=True)
class ProbeHealth:
    id: str
    site: str
    alive: bool
    detail: str  # why not alive, or what it said (legs, schedule)


def health(
    inv: Inventory,
    *,
    timeout_s: float = 3.0,
    connect: client.Connect = socket.create_connection,
) -> list[ProbeHealth]:
    """Which probe points answer, authenticated, with the legs the inventory gives them (a probe
    that answers with other legs is not healthy: it would test from the wrong addresses)."""
    return [
        _health_one(inv, site, probe, timeout_s, connect)
        for site in inv.sites
        for probe in site.probes
    ]


def _health_one(
    inv: Inventory,
    site: Site,
    probe: ProbePoint,
    timeout_s: float,
    connect: client.Connect,
) -> ProbeHealth:
    src = ProbeSource(inv, site.name, probe, connect=connect)
    try:
        answer = client.ask(
            src.target(),
            Order("hello"),
            client_context(inv),
            timeout=timeout_s,
            connect=connect,
        )
    except ProbeError as exc:
        return ProbeHealth(probe.id, site.name, False, str(exc))
    legs = answer.get("legs")
    want = {str(leg.address): leg.zone for leg in probe.legs}
    if legs != want:
        return ProbeHealth(
            probe.id,
            site.name,
            False,
            f"answers with legs {legs}, the inventory says {want}",
        )
    sched = answer.get("scheduled", 0)
    return ProbeHealth(
        probe.id,
        site.name,
        True,
        f"legs {', '.join(f'{z}={a}' for a, z in want.items())}; {sched} flows scheduled, "
        f"last run {answer.get('last_run') or 'never'}",
    )


def schedule(
    inv: Inventory,
    *,
    interval_s: float,
    timeout_s: float = TIMEOUT_S,
    connect: client.Connect = socket.create_connection,
) -> dict[str, str]:
    """Give each probe point its declared flows to open every `interval_s` (the results are read
    back with `kept_results`); `interval_s` 0 stops the schedules. Returns probe id -> what it
    answered or why it failed."""
    out: dict[str, str] = {}
    for site in inv.sites:
        for probe in site.probes:
            src = ProbeSource(inv, site.name, probe, timeout_s, connect)
            flows = [f for f in inv.flows if f.name in probe.flows]
            todo = tuple(a for _, a in src.attempts(site.name, flows)) if interval_s else ()
            try:
                answer = client.ask(
                    src.target(),
                    Order("schedule", todo, interval_s),
                    client_context(inv),
                    timeout=timeout_s + 5.0,
                    connect=connect,
                )
                out[probe.id] = f"{answer.get('scheduled')} flows every {interval_s:g} s"
            except ProbeError as exc:
                out[probe.id] = f"failed: {exc}"
    return out


def kept_results(
    inv: Inventory,
    probe_id: str,
    *,
    timeout_s: float = 5.0,
    connect: client.Connect = socket.create_connection,
) -> list[Result]:
    """The results a probe point kept from its scheduled runs (oldest first); ProbeError if it
    cannot be asked."""
    for site in inv.sites:
        for probe in site.probes:
            if probe.id == probe_id:
                src = ProbeSource(inv, site.name, probe, connect=connect)
                answer = client.ask(
                    src.target(),
                    Order("results"),
                    client_context(inv),
                    timeout=timeout_s,
                    connect=connect,
                )
                try:
                    return [result_from(x) for x in answer.get("results", [])]
                except OrderError as exc:
                    raise ProbeError(f"probe {probe_id} answered garbage: {exc}") from None
    raise ProbeError(f"no probe point {probe_id!r} in the inventory")
