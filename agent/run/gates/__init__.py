"""The gate kinds, one module each behind the one `Gate` protocol (base.py): backup, verify
(flows), wait, approval, soak, and the preconditions of a reconnection (attest.py). `GATES` maps
a playbook step's action to its gate; a new gate kind is a module and one line here. Imports
its own modules only."""

from __future__ import annotations

from collections.abc import Mapping

from agent.run.gates.approval import ApprovalGate
from agent.run.gates.attest import PreconditionsGate
from agent.run.gates.backup import BackupGate
from agent.run.gates.base import Gate
from agent.run.gates.soak import SoakGate
from agent.run.gates.verify import VerifyGate
from agent.run.gates.wait import WaitGate

GATES: Mapping[str, Gate] = {
    "backup_config": BackupGate(),
    "verify_flows": VerifyGate(),
    "wait": WaitGate(),
    "approval": ApprovalGate(),
    "soak": SoakGate(),
}
# checked before a reconnect_zone step sends anything (journaled as `STEP:preconditions`)
PRECONDITIONS: Gate = PreconditionsGate()
