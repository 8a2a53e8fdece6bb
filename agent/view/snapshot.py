"""What the crisis cell's page shows, computed from what the API answers: pure, no I/O.

`build(status, reports, ...)` turns `GET /v1/status` (and, per open incident, its audit report:
the regulatory clocks and the timeline, `agent.audit.report`) into one JSON object the page
renders and the server-sent events carry. A section the daemon does not provide (no `flows` in
the status of an older daemon; clocks for a role that may not read the audit report) is `None`
with a `*_note` saying why: the page says "not available", it never invents a state.

Imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MODES", "TIMELINE_ROWS", "build", "mode_class"]

JSON = dict[str, Any]

# every site mode the journal knows (agent.status.SiteMode) and the colour class of each
MODES = ("normal", "isolating", "isolated", "reconnecting", "reconnected")
TIMELINE_ROWS = 12  # the newest lines of an incident's timeline shown on the wall
_FLOW_CLASSES = {"passed": "flow-ok", "failed": "flow-bad"}


def mode_class(mode: str) -> str:
    """The CSS class of a site's mode; an unknown mode is shown as such, never as normal."""
    return f"mode-{mode}" if mode in MODES else "mode-unknown"


def _site(s: Mapping[str, Any]) -> JSON:
    mode = str(s.get("mode", "unknown"))
    drift = s.get("drift") or []
    return {
        "site": str(s.get("site", "?")),
        "mode": mode,
        "css": mode_class(mode),
        "level": s.get("level"),
        "since": s.get("since"),
        "by": s.get("by"),
        "run_id": s.get("run_id"),
        "locked_by": s.get("locked_by"),
        "drift": len(drift) if isinstance(drift, list) else 0,
    }


def _gates(show: Mapping[str, Any] | None) -> list[JSON]:
    """What an open run waits for, from its open gates (`GET /v1/runs/{id}`): a soak's end
    (`until`, epoch seconds: the page counts down to it), zones still to attest."""
    out: list[JSON] = []
    for g in (show or {}).get("gates") or []:
        detail = g.get("detail") or {}
        if g.get("status") != "open" or not isinstance(detail, dict):
            continue
        where = f"{g.get('site')} {g.get('step')}"
        until = detail.get("until")
        if detail.get("kind") == "soak" and isinstance(until, int | float):
            out.append({"kind": "soak", "where": where, "until": until})
        elif detail.get("missing"):
            missing = [str(z) for z in detail["missing"]]
            out.append({"kind": "attestation", "where": where, "missing": missing})
    return out


def _run(r: Mapping[str, Any], show: Mapping[str, Any] | None = None) -> JSON:
    total = int(r.get("steps_total") or 0)
    done = int(r.get("steps_done") or 0)
    return {
        "run_id": str(r.get("run_id", "?")),
        "playbook": r.get("playbook"),
        "level": r.get("level"),
        "sites": list(r.get("sites") or []),
        "actor": r.get("actor"),
        "status": r.get("status"),
        "waiting": r.get("waiting")
        or ("a second operator's approval" if r.get("status") == "awaiting_approval" else None),
        "steps_done": done,
        "steps_total": total,
        "percent": round(100 * done / total) if total else 0,
        "interrupted": bool(r.get("interrupted")),
        "break_glass": bool(r.get("break_glass")),
        "created_at": r.get("created_at"),
        "gates": _gates(show),
    }


def _flows(status: Mapping[str, Any]) -> tuple[list[JSON] | None, str | None]:
    flows = status.get("flows")
    if not isinstance(flows, list):
        return None, "this daemon does not report must-survive flow health"
    out = []
    for f in flows:
        st = f.get("status")
        out.append(
            {
                "flow": str(f.get("flow", "?")),
                "source": f.get("source"),
                "status": st or "unverified",
                "css": _FLOW_CLASSES.get(str(st), "flow-unknown"),
                "at": f.get("at"),
                "contradicted_by": list(f.get("contradicted_by") or []),
            }
        )
    return out, None


def _clocks(report: Mapping[str, Any] | None, incident_id: str) -> list[JSON] | None:
    if report is None:
        return None
    for inc in report.get("incidents") or []:
        if inc.get("incident_id") == incident_id:
            return [
                {
                    "kind": c.get("kind"),
                    "label": c.get("label"),
                    "rule": c.get("rule"),
                    "due": c.get("due"),  # ISO-8601 UTC: the page counts down to it
                    "status": c.get("status"),
                    "notified_at": c.get("notified_at"),
                    "to": c.get("to"),
                    "reference": c.get("reference"),
                }
                for c in inc.get("clocks") or []
            ]
    return []


def _timeline(report: Mapping[str, Any] | None) -> list[JSON] | None:
    if report is None:
        return None
    rows = report.get("timeline") or []
    return [
        {
            k: row.get(k)
            for k in ("ts", "event", "actor", "site", "device", "action", "outcome", "detail")
        }
        for row in rows[-TIMELINE_ROWS:]
    ]


def build(
    status: Mapping[str, Any],
    reports: Mapping[str, Mapping[str, Any]] | None,
    *,
    reports_note: str | None = None,
    runs: Mapping[str, Mapping[str, Any]] | None = None,
    now: float,
) -> JSON:
    """The page's content. `reports`: incident id -> its audit report (`Report.as_dict()`), or
    None when they could not be read (`reports_note` says why, e.g. the caller's role). `runs`:
    run id -> the open run's detail (`GET /v1/runs/{id}`: its gates)."""
    flows, flows_note = _flows(status)
    incidents = []
    for inc in status.get("incidents") or []:
        iid = str(inc.get("incident_id", "?"))
        report = reports.get(iid) if reports is not None else None
        incidents.append(
            {
                "incident_id": iid,
                "name": inc.get("name"),
                "site": inc.get("site"),
                "opened_at": inc.get("opened_at"),
                "opened_by": inc.get("opened_by"),
                "reason": inc.get("reason"),
                "clocks": _clocks(report, iid),
                "timeline": _timeline(report),
            }
        )
    return {
        "now": now,
        "sites": [_site(s) for s in status.get("sites") or []],
        "runs": [
            _run(r, (runs or {}).get(str(r.get("run_id")))) for r in status.get("open_runs") or []
        ],
        "flows": flows,
        "flows_note": flows_note,
        "drift": [
            {
                "device": a.get("device"),
                "site": a.get("site"),
                "kind": a.get("kind"),
                "detail": a.get("detail"),
                "first_seen": a.get("first_seen"),
            }
            for a in status.get("drift_alarms") or []
        ],
        "incidents": incidents,
        "reports_note": reports_note if reports is None else None,
        "last_poll": (status.get("last_poll") or {}).get("at"),
    }
