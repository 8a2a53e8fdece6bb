"""The daemon API's wire models of the orders given once a run has started or about an
incident: approve, roll back, attest a zone clean (`POST /v1/runs/{id}/...`), open or close an
incident, record a regulator's notification; requests (strict) and answers.

Apart from `agent.wire` (the run's own models: plan, start, the run's view, errors) so that a
command that only plans and runs (`cordon run --local`) does not create these ~11 pydantic
classes at its start (#18). Imports `agent.wire` and the inventory's `Name` only.
"""

from __future__ import annotations

from typing import Literal

from agent.inventory.models import Name
from agent.wire import Moment, Reason, RunId, _Body, _Out

__all__ = [
    "ApproveRequest",
    "Approved",
    "AttestRequest",
    "Attested",
    "IncidentOut",
    "IncidentRequest",
    "Notified",
    "NotifyRequest",
    "RollbackOut",
    "RollbackRequest",
    "RolledBackStep",
]


class ApproveRequest(_Body):
    reason: Reason | None = None


class RollbackRequest(_Body):
    reason: Reason | None = None


class AttestRequest(_Body):
    site: Name
    zone: Name
    reason: Reason


class IncidentRequest(_Body):
    action: Literal["open", "close"]
    name: RunId | None = None
    site: Name | None = None
    reason: Reason


class NotifyRequest(_Body):
    """A regulator was notified about an incident (`cordon incident notify`)."""

    incident: RunId | None = None  # default: the one open incident
    kind: Literal["nis2_early_warning", "nis2_notification", "nis2_final_report", "cnil", "ars"]
    to: Reason  # who was notified (an authority, a desk)
    ref: Reason  # their reference, or ours: the receipt to show an inspector
    at: Moment | None = None  # when it was made (default: when it is recorded)
    by: Reason | None = None  # who made it (default: the caller)


class Approved(_Out):
    run_id: str
    approved: str | None = None  # "run", or the step approved
    by: str | None = None


class RolledBackStep(_Out):
    device: str
    step: str
    status: str


class RollbackOut(_Out):
    run_id: str
    status: str
    steps: list[RolledBackStep] = []


class Attested(_Out):
    run_id: str
    site: str
    zone: str
    by: str | None = None


class IncidentOut(_Out):
    """`POST /v1/incidents`: opened (with its name and site) or closed."""

    incident_id: str
    name: str | None = None
    site: str | None = None
    status: str


class Notified(_Out):
    incident_id: str
    kind: str
    to: str
    ref: str
    by: str | None = None
    at: str | None = None
