"""The wait gate: hold a site for the step's seconds, journaled so a restart keeps the deadline.
Imports the gate protocol, the run's model and the playbook models."""

from __future__ import annotations

import time

from agent.playbook.models import Step, Wait
from agent.run.gates.base import GateRun, Passed, Verdict, Waiting
from agent.run.model import clock
from agent.status import GateStatus


class WaitGate:
    def check(self, run: GateRun, site: str, step: Step) -> Verdict:
        assert isinstance(step, Wait)
        obs, now = run.ctx.obs, time.time()
        gate = run.ctx.journal.gate(run.run_id, site, step.name)
        if gate is None:
            wake = now + step.seconds
            obs.gate(
                run.run_id,
                site,
                step.name,
                GateStatus.OPEN,
                wake_at=wake,
                say=f"{site}: {step.name}: waiting {step.seconds:g} s",
            )
            return Waiting(f"{site}: {step.name} until {clock(wake)}", wake)
        if gate.wake_at is not None and now < gate.wake_at:
            return Waiting(f"{site}: {step.name} until {clock(gate.wake_at)}", gate.wake_at)
        obs.gate(run.run_id, site, step.name, GateStatus.PASSED)
        return Passed()
