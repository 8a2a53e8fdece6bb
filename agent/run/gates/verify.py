"""The verify_flows gate: the injected flow verifier on a site's declared flows (or only its
must-survive ones); the problems found are the run's flow problems. Skipped, and said so, when
no verifier was injected. Imports the gate protocol, the run's context and model and the
playbook models; never the twin (the verifier is injected)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from agent.errors import CordonError
from agent.playbook.models import Step, VerifyFlows
from agent.run.context import Context
from agent.run.gates.base import GateRun, Passed, Verdict
from agent.run.model import ScopedVerifier
from agent.status import GateStatus


class VerifyGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        ctx = run.ctx
        if ctx.verifier is None:
            ctx.obs.flows_unchecked(run.run_id, site, step.name)
            return Passed()
        only = None
        if isinstance(step, VerifyFlows) and step.must_survive_only:
            only = {
                f.name
                for f in ctx.inv.flows
                if f.must_survive and site in (f.source.site, f.destination.site)
            }
        try:
            problems = _verify_flows(ctx, site, only)
        except CordonError as exc:
            problems = [f"{site}: flow check could not run: {exc.message}"]
        detail: dict[str, Any] = {"problems": problems}
        if only is not None:
            detail["scope"] = f"must-survive flows only ({len(only)})"
        ctx.obs.gate(run.run_id, site, step.name, GateStatus.PASSED, detail=detail)
        return Passed(tuple(problems))


def _verify_flows(ctx: Context, site: str, only: Collection[str] | None) -> list[str]:
    """The injected verifier on the flows of `site` (or only the flows named in `only`)."""
    assert ctx.verifier is not None
    states = ctx.journal.device_states()
    if only is None:
        return ctx.verifier(site, states)
    return cast(ScopedVerifier, ctx.verifier)(site, states, only)
