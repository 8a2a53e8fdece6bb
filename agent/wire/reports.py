"""The daemon API's wire models of what it reports besides a run: `GET /v1/status` (sites,
drift alarms, the last poll, incidents, the must-survive flows' health, the nodes), `GET /health`,
`GET /v1/runs` and the audit report's query.

Apart from `agent.wire` (the run's own models: plan, start, the run's view, errors) so that a
command that only plans and runs (`cordon run --local`) does not create these ~12 pydantic
classes at its start (#18). Imports pydantic and `agent.wire` only.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from agent.wire import MAX_RUNS_LIMIT, Num, RunId, RunSummary, _Out, _Query

__all__ = [
    "AuditReportQuery",
    "ClusterInfo",
    "DriftAlarm",
    "FlowHealth",
    "Health",
    "IncidentInfo",
    "NodeInfo",
    "PollInfo",
    "RunsOut",
    "RunsQuery",
    "SiteStatus",
    "StatusOut",
]


class RunsQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=MAX_RUNS_LIMIT)] = 20


class AuditReportQuery(_Query):
    run: RunId | None = None
    incident: RunId | None = None


class Health(_Out):
    ok: bool
    version: str | None = None


class DriftAlarm(_Out):
    """An open drift alarm: a device no longer shows what Cordon did."""

    id: Any = None
    device: str
    site: str | None = None
    kind: str | None = None
    subject: str | None = None
    detail: str
    status: str | None = None
    first_seen: Num | None = None
    last_seen: Num | None = None
    cleared_at: Num | None = None
    reapplied_at: Num | None = None
    reapplied: Any = None


class SiteStatus(_Out):
    site: str
    mode: str
    level: str | None = None
    since: Num | None = None
    by: str | None = None
    run_id: str | None = None
    locked_by: str | None = None
    drift: list[DriftAlarm] = []


class PollInfo(_Out):
    at: Num | None = None
    duration_s: Num | None = None
    counts: dict[str, Any] | None = None
    opened: list[Any] = []


class IncidentInfo(_Out):
    incident_id: str
    name: str
    site: str | None = None
    opened_at: Num | None = None
    opened_by: str | None = None
    reason: str | None = None
    closed_at: Num | None = None
    closed_by: str | None = None
    close_reason: str | None = None


class FlowHealth(_Out):
    """A must-survive flow's last verification (#15): passed, failed or unverified (never
    checked: None), which sources confirmed or contradicted it, when, by which run's step."""

    flow: str
    source: str  # the flow's endpoints, "site/zone/host -> site/zone/host:service"
    status: str | None = None
    expected: str | None = None
    confirmed_by: list[str] = []
    contradicted_by: list[str] = []
    at: Num | None = None
    run_id: str | None = None
    step: str | None = None


class NodeInfo(_Out):
    """A daemon sharing the state database: its last heartbeat (seconds ago), role, epoch."""

    node: str
    role: str
    epoch: int | None = None
    pid: int | None = None
    seen_s_ago: Num | None = None


class ClusterInfo(_Out):
    """Active/standby on PostgreSQL: the lease's holder and epoch, the last takeover, this
    node's role, every node seen."""

    this_node: str
    role: str
    holder: str | None = None
    epoch: int | None = None
    lease_left_s: Num | None = None
    last_takeover_at: Num | None = None  # when the holder took the lease (epoch time)
    taken_from: str | None = None
    nodes: list[NodeInfo] = []


class StatusOut(_Out):
    """`GET /v1/status`: every site, open runs, drift alarms, the last poll, open incidents,
    the must-survive flows' last verification and (several daemons on one database) the nodes."""

    sites: list[SiteStatus] = []
    open_runs: list[RunSummary] = []
    drift_alarms: list[DriftAlarm] = []
    last_poll: PollInfo | None = None
    incidents: list[IncidentInfo] = []
    flows: list[FlowHealth] = []
    cluster: ClusterInfo | None = None


class RunsOut(_Out):
    """`GET /v1/runs`: newest first."""

    runs: list[RunSummary] = []
