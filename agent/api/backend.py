"""What the daemon's API needs from the service: the `Backend` Protocol, one method per route.

A Protocol only (`agent.service.service.Service` satisfies it; the tests' fake does too); imports
`agent.wire` (`JSON`), `agent.service.playbooks` (`PlaybookMeta`) and the API's own `auth` types,
nothing that does I/O. The API authenticates and authorizes before calling it; the backend does
the rest and raises `agent.errors` types, which reach the client with their exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from agent.service.playbooks import PlaybookMeta
from agent.wire import JSON

if TYPE_CHECKING:
    from agent.api.auth import Caller, Decision

__all__ = ["NOTIFY_KINDS", "Backend"]

# the kinds of `regulatory.notified` the audit report's clocks know (agent/audit/__init__.py)
NOTIFY_KINDS = ("nis2_early_warning", "nis2_notification", "nis2_final_report", "cnil", "ars")


class Backend(Protocol):
    """The engine as the API sees it.

    Called from a worker thread (`asyncio.to_thread`), possibly several at once, with the
    caller's identity bound into the audit context (`actor`, `role`, `via`, `uid`): every event
    the backend logs during the call carries it. Each method returns a JSON object; it refuses by
    raising `agent.errors` (unknown run or site: `NotFound`; unknown playbook: `PlaybookError`;
    approving one's own run, a run not awaiting approval or an expired one: `ApprovalError`;
    site held: `LockError`; plan digest differs: `PlanError`).
    """

    def playbook_meta(self, name: str, params: dict[str, str] | None = None) -> PlaybookMeta:
        """The validated playbook's emergency and approval flags (with `params` bound);
        `PlaybookError` if unknown or invalid."""
        ...

    def status(self, caller: Caller) -> JSON:
        """Each site's mode and level, since when, by whom."""
        ...

    def plan(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        """The plan (commands, undo, impact) and its `digest`, to be quoted by `start_run`."""
        ...

    def start_run(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        digest: str,
        reason: str | None,
        attest: dict[str, str] | None,
        soak_seconds: int | None,
        decision: Decision,
        params: dict[str, str] | None = None,
    ) -> JSON:
        """Start (or, when `decision.needs_approval`, hold for approval) a run; `run_id` in it.

        `decision.break_glass`: log `run.break_glass` with the reason and flag the run for review.
        """
        ...

    def list_runs(self, caller: Caller, *, limit: int) -> JSON:
        """The most recent runs, newest first: `{"runs": [...]}`."""
        ...

    def show_run(self, caller: Caller, *, run_id: str) -> JSON:
        """One run with its steps; `NotFound` if unknown."""
        ...

    def wait_run(self, caller: Caller, *, run_id: str, since: str | None, wait: float) -> JSON:
        """`show_run` once its answer's version (`agent.service.changes.version`) differs from
        `since`, or after `wait` seconds: the long-poll of `GET /v1/runs/{run_id}?wait=`."""
        ...

    def approve(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        """Second-operator approval; `ApprovalError` for one's own run (the API cannot know)."""
        ...

    def rollback(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        """Restore the state before the run."""
        ...

    def attest(self, caller: Caller, *, run_id: str, site: str, zone: str, reason: str) -> JSON:
        """Attest that a zone is clean, allowing its reconnection in that run."""
        ...

    def incident(
        self,
        caller: Caller,
        *,
        action: Literal["open", "close"],
        name: str | None,
        site: str | None,
        reason: str,
    ) -> JSON:
        """Declare (`open`) or close an incident."""
        ...

    def notify(
        self,
        caller: Caller,
        *,
        incident: str | None,
        kind: str,
        to: str,
        ref: str,
        at: str | None = None,
        by: str | None = None,
    ) -> JSON:
        """Record that a regulator was notified (`regulatory.notified`, `kind` in
        `NOTIFY_KINDS`) for `incident` (default: the one open incident), made `at` (ISO-8601,
        default now; never in the future) by `by` (default the caller); `NotFound` if none."""
        ...

    def audit_report(
        self, caller: Caller, *, run: str | None, incident: str | None, verify: bool = True
    ) -> JSON:
        """The audit report for a run or an incident (or everything), the chain verified in
        the same read (`verify=False`: not, for a reader that shows no verdict: the view)."""
        ...
