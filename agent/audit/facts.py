"""What the audit log says about an incident, read once for the report and the drafts.

Every fact here is a record's field (with the record's `seq` to trace it) or a difference of two
records' times; nothing is inferred that the log does not hold. What the log does not hold is
`None`, and the renderers show it as unknown.

- runs: `run.started` (playbook, sites, actor, reason), `run.approved`, `run.break_glass`,
  `run.finished` (outcome, duration_s, failed, flow_problems, detail);
- per site: the runs that named it, in order; *time to contain*: from the incident's
  declaration (or, without one before it, from the first run's start) to the last step verified
  on the site (`step.succeeded`) by the first run that named it, when that run ended `done`;
  what the log says is still degraded: a site whose last run left it at a level other than L0,
  zones re-isolated by a soak and not reconnected since, runs that ended other than done,
  drift alarms not cleared;
- per flow: records that carry a flow's verdict (`flow` and `status`), else the runs' counts;
- notifications: `regulatory.notified` (kind, to, ref, at, by);
- configurations: per device a run changed, its `config.before` snapshot paired with each
  `config.after` of the same run (the blobs are read by the report, not here).

Imports the standard library only; pure (records and times in, facts out).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "ConfigChange",
    "FlowFact",
    "Notification",
    "RunFacts",
    "SiteFacts",
    "Summary",
    "summarize",
    "time_of",
]

_LEVEL = re.compile(r"L\d")
# run outcomes after which what the run applied stays (a done run at L0 is a return to normal)
_LEAVES_CHANGES = frozenset({"done", "failed", "partial", "reisolated", "rollback_failed"})


def time_of(record: Mapping[str, Any], key: str = "ts") -> datetime | None:
    try:
        return datetime.fromisoformat(str(record.get(key)))
    except ValueError:
        return None


@dataclass
class RunFacts:
    run_id: str
    playbook: str | None = None
    sites: list[str] = field(default_factory=list)
    level: str | None = None  # None: not in the log
    actor: str | None = None
    role: str | None = None
    reason: str | None = None
    started_at: datetime | None = None
    started_seq: int | None = None
    finished_at: datetime | None = None
    finished_seq: int | None = None
    outcome: str | None = None
    duration_s: float | None = None
    failed: int | None = None
    flow_problems: int | None = None
    detail: str | None = None
    break_glass: str | None = None  # its reason
    approved_by: list[str] = field(default_factory=list)
    changes: int = 0  # device.change records
    verified_on: dict[str, datetime] = field(default_factory=dict)  # site -> last step.succeeded
    verified_seq: dict[str, int] = field(default_factory=dict)  # site -> that record's seq
    change_seqs: list[int] = field(default_factory=list)  # the device.change records
    other_seqs: list[int] = field(default_factory=list)  # run.approved, run.break_glass

    @property
    def seqs(self) -> list[int]:
        """The records every fact of the run line comes from."""
        ends = [x for x in (self.started_seq, self.finished_seq) if x]
        return sorted({*ends, *self.change_seqs, *self.other_seqs})


@dataclass(frozen=True)
class SiteFacts:
    site: str
    runs: list[RunFacts]
    contained_at: datetime | None
    contain_from: str  # "declaration" | "first run's start" | ""
    time_to_contain: timedelta | None
    contain_note: str
    state: str  # the last run's effect, as the log says it
    degraded: bool | None  # None: the log cannot say
    seqs: tuple[int, ...] = ()  # the records it comes from: runs, step verified, re-isolations
    reisolated_seqs: tuple[int, ...] = ()  # the re-isolations its state names


@dataclass(frozen=True)
class FlowFact:
    flow: str
    status: str
    expected: str | None
    how: str  # the sources that confirmed or contradicted it, as recorded
    at: datetime | None
    seq: int


@dataclass(frozen=True)
class Notification:
    kind: str
    to: str | None
    ref: str | None
    at: datetime | None  # when it was made (`notified_at`), else the record's time
    recorded_at: datetime | None
    by: str | None
    recorded_by: str | None
    seq: int


@dataclass(frozen=True)
class ConfigChange:
    """A device's configuration before a run and after it (as the records name the snapshots):
    `after_sha256` None with `error`: the after snapshot could not be taken; with neither, no
    `config.after` is in the selection (the run still open, or the records cut)."""

    run_id: str
    device: str
    site: str | None
    before_sha256: str | None
    before_seq: int | None
    after_sha256: str | None
    after_seq: int | None
    run_outcome: str | None  # the run's status when the after snapshot was taken
    error: str | None


@dataclass
class Summary:
    first_at: datetime | None = None
    last_at: datetime | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    records: int = 0
    runs: list[RunFacts] = field(default_factory=list)
    sites: list[SiteFacts] = field(default_factory=list)
    still_degraded: list[str] = field(default_factory=list)
    degraded_seqs: list[tuple[int, ...]] = field(default_factory=list)  # per line: its records
    flows: list[FlowFact] = field(default_factory=list)
    flow_note: str = ""
    people: dict[str, list[str]] = field(default_factory=dict)  # actor -> events done
    people_seqs: dict[str, list[int]] = field(default_factory=dict)  # actor -> their records
    flow_note_seqs: tuple[int, ...] = ()  # the run.finished records the flow note counts
    configs: list[ConfigChange] = field(default_factory=list)


def _str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _level(record: Mapping[str, Any]) -> str | None:
    for key in ("run_level", "level"):  # `level` is also the log level (info, warning...)
        value = record.get(key)
        if isinstance(value, str) and _LEVEL.fullmatch(value):
            return value
    return None


def _runs(records: list[dict[str, Any]]) -> dict[str, RunFacts]:  # noqa: PLR0912 - per event
    runs: dict[str, RunFacts] = {}
    for rec in records:
        rid = rec.get("run_id")
        if not isinstance(rid, str) or not rid:
            continue
        run = runs.setdefault(rid, RunFacts(rid))
        event, when = rec["event"], time_of(rec)
        if event == "run.started":
            run.playbook = _str(rec.get("playbook"))
            sites = rec.get("sites")
            run.sites = [str(s) for s in sites] if isinstance(sites, list) else []
            run.level = _level(rec)
            run.actor, run.role = _str(rec.get("actor")), _str(rec.get("role"))
            run.reason = _str(rec.get("reason"))
            run.started_at, run.started_seq = when, int(rec.get("seq", 0))
        elif event == "run.finished":
            run.outcome = _str(rec.get("outcome"))
            run.finished_at, run.finished_seq = when, int(rec.get("seq", 0))
            dur = rec.get("duration_s")
            run.duration_s = float(dur) if isinstance(dur, int | float) else None
            for key in ("failed", "flow_problems"):
                value = rec.get(key)
                if isinstance(value, int):
                    setattr(run, key, value)
                elif isinstance(value, list):
                    setattr(run, key, len(value))
            run.detail = _str(rec.get("detail"))
        elif event in ("run.expired", "run.cancelled") and run.outcome is None:
            run.outcome = _str(rec.get("outcome")) or event.split(".")[1]
            run.finished_at, run.finished_seq = when, int(rec.get("seq", 0))
        elif event == "run.break_glass":
            run.break_glass = _str(rec.get("reason")) or "(no reason recorded)"
            run.other_seqs.append(int(rec.get("seq", 0)))
        elif event == "run.approved":
            run.approved_by.append(str(rec.get("actor") or "unknown"))
            run.other_seqs.append(int(rec.get("seq", 0)))
        elif event == "device.change":
            run.changes += 1
            run.change_seqs.append(int(rec.get("seq", 0)))
        elif event == "step.succeeded" and when is not None:
            site = rec.get("site")
            if isinstance(site, str) and site:
                run.verified_on[site] = when
                run.verified_seq[site] = int(rec.get("seq", 0))
    return runs


def _site(
    name: str,
    runs: list[RunFacts],
    declared: datetime | None,
    reisolated: list[tuple[int, str]],
    declared_seq: int | None,
) -> SiteFacts:
    first, last = runs[0], runs[-1]
    contained = first.verified_on.get(name) if first.outcome == "done" else None
    seqs = {x for r in runs for x in (r.started_seq, r.finished_seq) if x}
    seqs |= {seq for seq, _ in reisolated}
    if contained is not None:
        seqs.add(first.verified_seq[name])
    start = (
        declared
        if declared is not None and (first.started_at is None or declared <= first.started_at)
        else first.started_at
    )
    source = "declaration" if start is not None and start == declared else "first run's start"
    if contained is not None and source == "declaration" and declared_seq:
        seqs.add(declared_seq)
    if contained is not None and start is not None:
        ttc: timedelta | None = contained - start
        note = f"by {first.playbook or 'unknown playbook'} ({first.run_id})"
    else:
        ttc = None
        note = (
            f"first run {first.run_id} ended {first.outcome or 'without a recorded end'}"
            if contained is None
            else "no start time recorded"
        )
    if last.outcome is None:
        state, degraded = f"{last.playbook or 'run'} {last.run_id} still open", True
    elif last.outcome not in _LEAVES_CHANGES:
        state, degraded = f"{last.playbook} {last.run_id} ended {last.outcome}", None
    elif last.level is None:
        state = (
            f"after {last.playbook} {last.run_id} ({last.outcome}); "
            "the log does not record the run's level"
        )
        degraded = None
    elif last.level == "L0" and last.outcome == "done":
        state, degraded = f"back to normal by {last.playbook} {last.run_id} (L0, done)", False
    else:
        state, degraded = f"{last.playbook} {last.run_id}: {last.level}, {last.outcome}", True
    if reisolated:
        state += "; re-isolated: " + ", ".join(zone for _, zone in reisolated)
        degraded = True
    return SiteFacts(
        name,
        runs,
        contained,
        source if ttc else "",
        ttc,
        note,
        state,
        degraded,
        tuple(sorted(seqs)),
        tuple(seq for seq, _ in reisolated),
    )


def _flows(
    records: list[dict[str, Any]], runs: Iterable[RunFacts]
) -> tuple[list[FlowFact], str, tuple[int, ...]]:
    found: list[FlowFact] = []
    for rec in records:
        per = rec.get("flows")
        items = per if isinstance(per, list) else [rec] if isinstance(rec.get("flow"), str) else []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("flow"), str):
                continue
            status = item.get("status") or item.get("outcome")
            if not isinstance(status, str):
                continue
            how = [
                f"{label} {', '.join(map(str, item[key]))}"
                for key, label in (
                    ("confirmed_by", "confirmed by"),
                    ("contradicted_by", "contradicted by"),
                )
                if isinstance(item.get(key), list) and item[key]
            ]
            found.append(
                FlowFact(
                    flow=item["flow"],
                    status=status,
                    expected=_str(item.get("expected")),
                    how="; ".join(how) or "sources not recorded",
                    at=time_of(rec),
                    seq=int(rec.get("seq", 0)),
                )
            )
    if found:
        return found, "", ()
    counted = [r for r in runs if r.flow_problems is not None]
    if not counted:
        return [], "no flow verification is recorded in the selected records", ()
    bad = sum(r.flow_problems or 0 for r in counted)
    return (
        [],
        (
            f"the log holds no per-flow result, only each run's count of flow problems "
            f"({bad} in {len(counted)} run(s): "
            + ", ".join(f"{r.run_id} {r.flow_problems}" for r in counted)
            + "); per-flow verdicts are in the journal (`cordon show`)"
        ),
        tuple(r.finished_seq for r in counted if r.finished_seq),
    )


def _open_ends(
    records: list[dict[str, Any]],
) -> tuple[dict[str, list[tuple[int, str]]], dict[str, tuple[int, str]]]:
    """Zones re-isolated by a soak (site -> [(seq, zone)]) and drift alarms not cleared since
    (device -> (seq, detail))."""
    reisolated: dict[str, list[tuple[int, str]]] = {}
    drift: dict[str, tuple[int, str]] = {}
    for rec in records:
        event, seq = rec["event"], int(rec.get("seq", 0))
        if event == "reconnect.reisolated" and isinstance(rec.get("site"), str):
            zones = rec.get("zones") if isinstance(rec.get("zones"), list) else []
            for zone in zones or ["(zone not recorded)"]:
                reisolated.setdefault(rec["site"], []).append((seq, str(zone)))
        elif event == "drift.alarm" and rec.get("device"):
            drift[str(rec["device"])] = (seq, _str(rec.get("detail")) or "no detail recorded")
        elif event == "drift.cleared" and rec.get("device"):
            drift.pop(str(rec["device"]), None)
    return reisolated, drift


def _degraded(out: Summary, drift: dict[str, tuple[int, str]]) -> list[tuple[str, tuple[int, ...]]]:
    """Each line of what is still degraded, with the records it comes from."""
    lines: list[tuple[str, tuple[int, ...]]] = []
    for site in out.sites:
        last = site.runs[-1]
        # the state is the last run's, and the re-isolations since the last run done
        ends = {x for x in (last.started_seq, last.finished_seq) if x}
        seqs = tuple(sorted(ends | set(site.reisolated_seqs)))
        if site.degraded:
            lines.append((f"{site.site}: {site.state}", seqs))
        elif site.degraded is None:
            lines.append((f"{site.site}: unknown ({site.state})", seqs))
    for run in out.runs:
        if run.outcome is None or run.outcome in ("done", "cancelled", "expired"):
            continue
        later = [
            r
            for r in out.runs
            if r.outcome == "done"
            and (r.finished_seq or 0) > (run.finished_seq or 0)
            and set(run.sites) <= set(r.sites)
        ]
        if not later:  # a later run on the same sites that ended done settles it
            lines.append(
                (
                    f"run {run.run_id} ({run.playbook}) ended {run.outcome}"
                    + (f": {run.detail}" if run.detail else ""),
                    tuple(x for x in (run.finished_seq,) if x),
                )
            )
    lines += [
        (f"drift alarm on {device} not cleared: {detail}", (seq,))
        for device, (seq, detail) in sorted(drift.items())
    ]
    return lines


def _sha(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _configs(records: list[dict[str, Any]]) -> list[ConfigChange]:
    """Each `config.after` paired with its run's `config.before` of the device; a before with no
    after in the selection stands alone. In the order of the after (else the before) record."""
    befores: dict[tuple[str, str], dict[str, Any]] = {}
    out: list[tuple[int, ConfigChange]] = []
    paired: set[tuple[str, str]] = set()
    for rec in records:
        event = rec["event"]
        if event not in ("config.before", "config.after"):
            continue
        key = (str(rec.get("run_id") or ""), str(rec.get("device") or ""))
        if event == "config.before":
            befores.setdefault(key, rec)
            continue
        paired.add(key)
        before = befores.get(key)
        failed = rec.get("outcome") == "failed" or _sha(rec.get("config_sha256")) is None
        out.append(
            (
                int(rec.get("seq", 0)),
                ConfigChange(
                    run_id=key[0],
                    device=key[1],
                    site=_str(rec.get("site")),
                    before_sha256=_sha(before.get("config_sha256")) if before else None,
                    before_seq=int(before.get("seq", 0)) if before else None,
                    after_sha256=None if failed else _sha(rec.get("config_sha256")),
                    after_seq=int(rec.get("seq", 0)),
                    run_outcome=_str(rec.get("run_outcome")),
                    error=(_str(rec.get("error")) or "no snapshot recorded") if failed else None,
                ),
            )
        )
    for key, before in befores.items():
        if key not in paired:
            seq = int(before.get("seq", 0))
            change = ConfigChange(
                key[0], key[1], None, _sha(before.get("config_sha256")), seq, None, None, None, None
            )
            out.append((seq, change))
    return [c for _, c in sorted(out, key=lambda pair: pair[0])]


def summarize(
    records: list[dict[str, Any]], *, declared: datetime | None, declared_seq: int | None = None
) -> Summary:
    """The facts of `records` (the selection, in chain order); `declared`: the incident's
    declaration (record `declared_seq`), from which times to contain are counted."""
    out = Summary(records=len(records))
    if records:
        out.first_at, out.last_at = time_of(records[0]), time_of(records[-1])
        out.first_seq, out.last_seq = int(records[0].get("seq", 0)), int(records[-1].get("seq", 0))
    runs = _runs(records)
    out.runs = [r for r in runs.values() if r.started_at is not None or r.outcome is not None]
    reisolated, drift = _open_ends(records)
    by_site: dict[str, list[RunFacts]] = {}
    for run in out.runs:
        for site in run.sites:
            by_site.setdefault(site, []).append(run)
    for name in sorted(by_site):
        site_runs = by_site[name]
        last_done = max((r.finished_seq or 0 for r in site_runs if r.outcome == "done"), default=0)
        zones = [(seq, z) for seq, z in reisolated.get(name, []) if seq > last_done]
        out.sites.append(_site(name, site_runs, declared, zones, declared_seq))
    degraded = _degraded(out, drift)
    out.still_degraded = [line for line, _ in degraded]
    out.degraded_seqs = [seqs for _, seqs in degraded]
    out.flows, out.flow_note, out.flow_note_seqs = _flows(records, out.runs)
    out.configs = _configs(records)
    for rec in records:
        actor = rec.get("actor")
        if isinstance(actor, str) and actor:
            done = out.people.setdefault(actor, [])
            if rec["event"] not in done:
                done.append(rec["event"])
                # the first record of each kind an actor wrote traces the line
                out.people_seqs.setdefault(actor, []).append(int(rec.get("seq", 0)))
    return out
