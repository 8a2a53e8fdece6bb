"""A run report of the engine as text or JSON: what `cordon resume` prints (it drives the engine
in this process, without the API).

Imports the run's `RunReport` (`agent.run.model`, a value) only.
"""

from __future__ import annotations

from agent.run.model import RunReport

__all__ = ["render_report", "report_json"]


def render_report(report: RunReport) -> str:
    lines = [f"run {report.run_id}: {report.status} in {report.duration_s:.2f} s"]
    lines.append(f"  {'site':<30} {'step':<28} {'device':<10} {'method':<6} result")
    for o in report.outcomes:
        lines.append(
            f"  {o.site:<30} {o.step:<28} {o.device:<10} {o.method:<6} {o.status}"
            + (f"  ({o.error})" if o.error else "")
        )
    lines += [f"  flow check: {p}" for p in report.flow_problems]
    lines += [f"  flow check: {u}" for u in report.flows_unverified]
    return "\n".join(lines)


def report_json(report: RunReport) -> dict[str, object]:
    return {
        "run_id": report.run_id,
        "status": report.status,
        "duration_s": round(report.duration_s, 3),
        "flow_problems": report.flow_problems,
        "flows_unverified": report.flows_unverified,
        "steps": [o.__dict__ for o in report.outcomes],
    }
