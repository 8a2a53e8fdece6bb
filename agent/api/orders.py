"""The API's rules, whatever carries the request: the role check of each route, the run's full
policy (the playbook's flags), the audit of every refusal, request validation, errors as JSON,
and the call of the `Backend`. The HTTP routes (`agent.api.http`, aiohttp) and the in-process
client of `cordon ... --local` (`agent.api.local`) both go through here, so a local order is
authorized and audited exactly as one sent to the daemon.

Imports `agent.api.{auth,backend}`, `agent.wire`, `agent.audit` and `agent.errors`; never aiohttp,
httpx, the service, the engine or a driver.

A request is handled in this order: the caller is identified (by the transport) -> `check`: the
role may do the action -> `ROUTES[...]`: validate the request -> (for a run: the playbook's
flags, then the full policy) -> the backend. The caller is bound into the audit context by
`acting` around all of it; a refusal is logged as `access.refused` there.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agent import audit
from agent.api.auth import GRANTS, Action, Caller, Decision, Policy, authorize, may, user_name
from agent.api.backend import Backend
from agent.audit.redact import scrub
from agent.errors import (
    AccessRefused,
    ApprovalError,
    AuditError,
    ConfigError,
    CordonError,
    DaemonError,
    DeviceError,
    InventoryError,
    LabError,
    NotFound,
    PlanError,
    PlaybookError,
    RunError,
    SecretError,
    StandbyError,
    StateLostError,
)
from agent.wire import JSON, PlanRequest, RunRequest, parse_body, parse_query, run_id

# The other routes' requests (agent.wire.reports, agent.wire.steering) are imported by their
# route: a `cordon run --local` does not create their classes (#18).

__all__ = [
    "MAX_WAIT_S",
    "ROUTES",
    "Orders",
    "Request",
    "error_body",
    "http_status",
    "internal_error",
    "refused",
    "wait_query",
]

_log = logging.getLogger("cordon.daemon")

MAX_WAIT_S = 30.0  # the longest long-poll of GET /v1/runs/{run_id}?wait=

# -- errors as JSON ----------------------------------------------------------------------------

# First match wins: subclasses before their bases.
_STATUS: tuple[tuple[type[CordonError], int], ...] = (
    (NotFound, 404),
    (InventoryError, 422),
    (PlaybookError, 422),
    (SecretError, 500),  # the daemon's own credentials: not the caller's input
    (ConfigError, 400),
    (AccessRefused, 403),
    (ApprovalError, 409),
    (StandbyError, 421),  # misdirected: the active node's address is in the body
    (StateLostError, 503),  # the state database away: the server's outage, not the request
    (DaemonError, 400),
    (PlanError, 422),
    (RunError, 409),  # refused (includes LockError: the site is held by another run)
    (DeviceError, 502),
    (AuditError, 500),
    (LabError, 500),
)


def http_status(err: CordonError) -> int:
    """The HTTP status of a `CordonError` (the exit code travels in the body)."""
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_body(err: CordonError) -> JSON:
    """The JSON error body for `err`, scrubbed of every registered secret."""
    info: JSON = {
        "type": type(err).__name__,
        "message": scrub(err.message),
        "hint": scrub(err.hint) if err.hint else None,
        "exit_code": err.exit_code,
    }
    if isinstance(err, InventoryError | PlaybookError):
        info["issues"] = [
            {k: scrub(v) if isinstance(v, str) else v for k, v in i.as_dict().items()}
            for i in err.issues
        ]
    if isinstance(err, DeviceError):
        info["device"] = err.device
        info["operation"] = err.operation
    return {"error": info}


def internal_error(exc: Exception, where: str) -> tuple[CordonError, int]:
    """A failure that is no `CordonError`, as the error (and HTTP status) the caller gets: the
    journal unusable (503), anything else an internal error whose traceback goes to the log."""
    if isinstance(exc, sqlite3.Error):  # the journal: read-only, locked, disk full
        return DaemonError(
            f"the daemon's journal cannot be used: {exc}",
            hint="see the daemon's state directory: permissions, free space, locks",
        ), 503
    _log.error("internal error on %s:\n%s", where[:200], scrub(traceback.format_exc()))
    return DaemonError(
        "internal error in the daemon; nothing more is said here",
        hint="the daemon's log has the details",
    ), 500


def is_refusal(err: CordonError) -> bool:
    """Refused requests, audited as `access.refused`; engine failures are the engine's to log."""
    if isinstance(err, SecretError):
        return False
    return isinstance(err, AccessRefused | ApprovalError | ConfigError)


def refused(action: str, err: CordonError) -> None:
    """Log `access.refused` for `action` (the caller is in the audit context)."""
    audit.get_logger().warning(
        "access.refused",
        action=action,
        why=err.message,
        error=type(err).__name__,
        outcome="refused",
    )


def wait_query(query: Mapping[str, str], *, what: str) -> tuple[float, str | None]:
    """`?wait=SECONDS&since=VERSION` of a run's long-poll (both optional; other parameters are
    ignored, as before the long-poll): `ConfigError` for a bad value, nothing changed."""
    raw_wait, since = query.get("wait"), query.get("since")
    try:
        wait = float(raw_wait) if raw_wait is not None else 0.0
    except ValueError:
        wait = -1.0
    if not 0.0 <= wait <= MAX_WAIT_S:
        raise ConfigError(
            f"invalid request to {what}: wait={str(raw_wait)[:40]!r}: expected seconds from 0 "
            f"to {MAX_WAIT_S:g}",
            hint="nothing was changed",
        )
    if since is not None and not re.fullmatch(r"[0-9a-f]{16}", since):
        raise ConfigError(
            f"invalid request to {what}: since={since[:40]!r}: expected the 16 hex digits of "
            "a version this route answered",
            hint="nothing was changed",
        )
    return wait, since


# -- the rules ---------------------------------------------------------------------------------


class Act:
    """The action being handled; a route may narrow it (`incident` -> `incident.open`)."""

    def __init__(self, action: str) -> None:
        self.action = action


@dataclass(frozen=True)
class Request:
    """What a route reads of a request: its body (bytes, as sent), its query parameters (a
    multi-mapping with `getall`, as aiohttp's) and the run id of its path."""

    body: bytes = b""
    query: Any = None
    run: str = ""


class Orders:
    """The API's rules over a `Backend`; each route's function is in `ROUTES`."""

    def __init__(self, backend: Backend, policy: Policy) -> None:
        self.backend = backend
        self.policy = policy

    def identify(self, uid: int, token: Callable[[], str | None], action: str) -> Caller:
        """The caller on a local connection (the peer's `uid`, or the bearer token it presented,
        as `token()` reads it); a refusal is audited here, as whoever the uid is."""
        try:
            return self.policy.identify(uid, token())
        except AccessRefused as err:
            with audit.bind(actor=user_name(uid), role=None, via="token", uid=uid):
                refused(action, err)
            raise

    @contextlib.contextmanager
    def acting(self, caller: Caller, act: Act) -> Iterator[None]:
        """Bind the caller into the audit context; log a refusal raised inside."""
        with audit.bind(actor=caller.user, role=caller.role, via=caller.via, uid=caller.uid):
            try:
                yield
            except CordonError as err:
                if is_refusal(err):
                    refused(act.action, err)
                raise

    def require(self, decision: Decision, action: Action) -> Decision:
        """`decision` if allowed, else `AccessRefused` naming the roles that may."""
        if decision.allowed:
            return decision
        roles = " or ".join(r.value for r in GRANTS if action in GRANTS[r])
        hint = decision.hint or f"{action} needs the role {roles} (see {self.policy.source})"
        raise AccessRefused(f"refused: {decision.why}", hint=hint)

    def check(self, caller: Caller, action: str) -> None:
        """The role check a route makes before reading its request (none for `incident`: its
        body says which action it is)."""
        if action != "incident":
            act = Action(action)
            self.require(may(caller, act), act)

    # -- the routes (after `check`; called in a worker thread)

    def status(self, caller: Caller, _req: Request, _act: Act) -> JSON:
        return self.backend.status(caller)

    def plan(self, caller: Caller, req: Request, _act: Act) -> JSON:
        body = parse_body(PlanRequest, req.body, what="POST /v1/plan")
        return self.backend.plan(
            caller,
            playbook=body.playbook,
            sites=list(body.sites) if body.sites else None,
            params=dict(body.params) if body.params else None,
        )

    def run(self, caller: Caller, req: Request, _act: Act) -> JSON:
        body = parse_body(RunRequest, req.body, what="POST /v1/runs")
        params = dict(body.params) if body.params else None
        meta = self.backend.playbook_meta(body.playbook, params)
        decision = authorize(
            caller,
            Action.RUN,
            playbook_emergency=meta.emergency,
            playbook_approval=meta.approval,
            reason=body.reason,
        )
        self.require(decision, Action.RUN)
        return self.backend.start_run(
            caller,
            playbook=body.playbook,
            sites=list(body.sites) if body.sites else None,
            digest=body.digest,
            reason=body.reason,
            attest=dict(body.attest) if body.attest else None,
            soak_seconds=body.soak_seconds,
            decision=decision,
            params=params,
        )

    def runs(self, caller: Caller, req: Request, _act: Act) -> JSON:
        from agent.wire.reports import RunsQuery  # noqa: PLC0415 - #18

        query = parse_query(RunsQuery, req.query, what="GET /v1/runs")
        return self.backend.list_runs(caller, limit=query.limit)

    def show(self, caller: Caller, req: Request, _act: Act) -> JSON:
        what = "GET /v1/runs/{run_id}"
        rid = run_id(req.run, what=what)
        wait, since = wait_query(req.query, what=what)
        if wait > 0:  # a long-poll: answer once the run differs from `since` (#18)
            return self.backend.wait_run(caller, run_id=rid, since=since, wait=wait)
        return self.backend.show_run(caller, run_id=rid)

    def approve(self, caller: Caller, req: Request, _act: Act) -> JSON:
        what = "POST /v1/runs/{run_id}/approve"
        rid = run_id(req.run, what=what)
        from agent.wire.steering import ApproveRequest  # noqa: PLC0415 - #18

        body = parse_body(ApproveRequest, req.body, what=what)
        return self.backend.approve(caller, run_id=rid, reason=body.reason)

    def rollback(self, caller: Caller, req: Request, _act: Act) -> JSON:
        what = "POST /v1/runs/{run_id}/rollback"
        rid = run_id(req.run, what=what)
        from agent.wire.steering import RollbackRequest  # noqa: PLC0415 - #18

        body = parse_body(RollbackRequest, req.body, what=what)
        return self.backend.rollback(caller, run_id=rid, reason=body.reason)

    def attest(self, caller: Caller, req: Request, _act: Act) -> JSON:
        what = "POST /v1/runs/{run_id}/attest"
        rid = run_id(req.run, what=what)
        from agent.wire.steering import AttestRequest  # noqa: PLC0415 - #18

        body = parse_body(AttestRequest, req.body, what=what)
        return self.backend.attest(
            caller, run_id=rid, site=body.site, zone=body.zone, reason=body.reason
        )

    def incident(self, caller: Caller, req: Request, act: Act) -> JSON:
        from agent.wire.steering import IncidentRequest  # noqa: PLC0415 - #18

        # The body says which action this is (audited as incident.open / incident.close).
        body = parse_body(IncidentRequest, req.body, what="POST /v1/incidents")
        action = Action.INCIDENT_OPEN if body.action == "open" else Action.INCIDENT_CLOSE
        act.action = action.value
        self.require(may(caller, action), action)
        return self.backend.incident(
            caller, action=body.action, name=body.name, site=body.site, reason=body.reason
        )

    def notify(self, caller: Caller, req: Request, _act: Act) -> JSON:
        from agent.wire.steering import NotifyRequest  # noqa: PLC0415 - #18

        body = parse_body(NotifyRequest, req.body, what="POST /v1/incidents/notify")
        return self.backend.notify(
            caller,
            incident=body.incident,
            kind=body.kind,
            to=body.to,
            ref=body.ref,
            at=body.at,
            by=body.by,
        )

    def audit_report(self, caller: Caller, req: Request, _act: Act) -> JSON:
        what = "GET /v1/audit/report"
        from agent.wire.reports import AuditReportQuery  # noqa: PLC0415 - #18

        query = parse_query(AuditReportQuery, req.query, what=what)
        if query.run is None and query.incident is None:
            raise ConfigError(
                f"invalid request to {what}: name a run or an incident",
                hint="cordon audit report --run RUN_ID, or --incident INCIDENT_ID",
            )
        return self.backend.audit_report(caller, run=query.run, incident=query.incident)


Route = Callable[[Orders, Caller, Request, Act], JSON]

# (method, path under /v1) -> (action, route); `{run_id}` is the run id of the path
ROUTES: dict[tuple[str, str], tuple[str, Route]] = {
    ("GET", "/status"): (Action.STATUS, Orders.status),
    ("POST", "/plan"): (Action.PLAN, Orders.plan),
    ("POST", "/runs"): (Action.RUN, Orders.run),
    ("GET", "/runs"): (Action.RUNS, Orders.runs),
    ("GET", "/runs/{run_id}"): (Action.SHOW, Orders.show),
    ("POST", "/runs/{run_id}/approve"): (Action.APPROVE, Orders.approve),
    ("POST", "/runs/{run_id}/rollback"): (Action.ROLLBACK, Orders.rollback),
    ("POST", "/runs/{run_id}/attest"): (Action.ATTEST, Orders.attest),
    ("POST", "/incidents"): ("incident", Orders.incident),
    ("POST", "/incidents/notify"): (Action.INCIDENT_NOTIFY, Orders.notify),
    ("GET", "/audit/report"): (Action.AUDIT_REPORT, Orders.audit_report),
}
