"""The audit vocabulary: every event name written to the audit trail, with what it means.

Owns the names only (data, no behaviour); producers log them with `audit.get_logger()` and the
report (`agent.audit.report`) reads them. A test scans the source: an event logged that is not
here, an entry here that nothing logs, or an event the report reads that nothing logs, fails it.
Imports nothing.

Common fields of every record are described in `agent.audit`; an entry names the event's own.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["VOCABULARY"]

_EVENTS: dict[str, str] = {
    # incidents and regulatory clocks (the service)
    "incident.declared": "an incident was opened (name, site, reason): the regulatory clocks start",
    "incident.closed": "an incident was closed (name, reason)",
    "regulatory.notified": "a notification was sent (kind = nis2_early_warning | "
    "nis2_notification | nis2_final_report | cnil | ars; to, ref; notified_at: when it was made, "
    "notified_by: who made it, when given): the report's clock for that kind is met",
    # a run's life (the service plans; the engine runs)
    "run.planned": "a plan was computed and shown (playbook, sites, digest)",
    "run.refused": "the plan was refused (refusals): nothing was sent",
    "run.approved": "an approver accepted a run awaiting approval (two-person rule)",
    "run.break_glass": "an emergency playbook ran without the second approval (reason)",
    "run.started": "a run began (playbook, sites, level, changes, reason, outcome)",
    "run.finished": "a run ended (outcome, duration_s, failed, flow_problems, flows_unverified, "
    "detail)",
    "run.expired": "an approval or attestation wait ran out; the run stopped (detail)",
    "run.approval_timeout": "an approval step timed out; outcome proceed or abort per playbook",
    "run.cancelled": "a run that had sent nothing was rolled back: cancelled, sites freed",
    "run.rollback": "a rollback started on a device (device, steps to undo)",
    "run.resumed": "a run was resumed after a crash (settled steps, roll_back)",
    "run.stopped": "the run lost its journal and stopped sending (step, device, reason)",
    "run.proceed_failed": "the daemon could not continue an open run; it retries (retry_in_s)",
    # steps and the devices they change (the engine; device records by the drivers)
    "step.started": "a device step is about to be sent (step, device, action, commands)",
    "step.succeeded": "a device step was applied and read back as intended",
    "step.failed": "a step failed or was refused (outcome, error)",
    "flow.checked": "a flow's verdict at a verify step or soak probe (flow, expected, outcome = "
    "passed | failed | unverified, must_survive, confirmed_by, contradicted_by: the sources)",
    "device.change": "commands sent to a device and how it ended (commands, outcome; output "
    "as evidence)",
    "device.verify": "a read-back of a device: outcome, polls, mismatches",
    "config.before": "a device's configuration saved before the run changed it (device, "
    "config_sha256: the snapshot in the evidence store)",
    "config.after": "a device the run changed, its configuration read once the run ended or "
    "was rolled back (site, device, run_outcome: the run's status then, config_sha256: the "
    "snapshot in the evidence store; outcome failed, error: it could not be read, the run's "
    "outcome stands)",
    # dead-man safety net (the engine)
    "deadman.restore_failed": "confirming a change on a device failed; its revert timer may fire",
    "deadman.controller": "a device was lost after a reopening change: the controller re-cuts",
    "deadman.reverted": "the controller put a lost device back in its fail-safe state",
    "deadman.unreachable": "a lost device stayed unreachable: state unknown, resume the run",
    # reconnection (the engine)
    "reconnect.attested": "a human attested a zone clean before reconnection (zone, reason)",
    "reconnect.preconditions": "reconnection preconditions passed (baseline matches, attested)",
    "soak.started": "a soak period began after reconnection (seconds, interval)",
    "soak.passed": "a soak period ended without anomaly",
    "soak.anomaly": "a soak check found an anomaly (zones, reason)",
    "reconnect.reisolated": "zones re-isolated after a soak anomaly; the run stopped (outcome)",
    # the daemon and its jobs
    "daemon.started": "the daemon is serving (pid, version, socket, inventory, roles, "
    "flow_sources)",
    "daemon.stopped": "the daemon stopped (signal, outcome)",
    "daemon.resume": "the daemon picked up an open run at start (run_id)",
    "node.active": "this daemon took the active lease (node, epoch, taken_from, open_runs): it "
    "drives the runs from now on",
    "node.fenced": "a journal write of this daemon was refused: it no longer holds the active "
    "lease with its epoch (node, epoch); nothing written, nothing sent",
    "node.stepped_down": "this daemon lost the active lease (node, epoch, why): it drives and "
    "sends nothing more; standby",
    "state.lost": "a journal transaction of this active daemon failed on the state database "
    "(node, error): it drives nothing until the database answers, then takes the lease again and "
    "settles its open runs from the devices",
    "daemon.warm": "sessions opened to every device at start (devices, unreachable)",
    "backup.failed": "a scheduled configuration backup of a device failed (device, error)",
    "poll.failed": "a drift poll of the fleet failed (error)",
    "drift.alarm": "a device no longer shows the isolation recorded for it",
    "drift.cleared": "a drifted device shows its recorded isolation again",
    "drift.reapplied": "the recorded isolation was re-applied to a drifted device (outcome)",
    "traffic.stopped": "a must-survive flow kept through a cut by accept rules stopped: its "
    "rules, present, counted no packet (or packets one way only) between two polls (device, "
    "site, flow, detail)",
    "traffic.resumed": "a must-survive flow's accept rules count traffic again, or the record "
    "no longer keeps it by a rule: its traffic alarm is cleared (device, site, flow, alarm_id)",
    "access.refused": "a caller's role did not allow the request (action, why, error)",
    "tls.refused": "a TLS handshake on the API over TCP or the view was refused (listener, "
    "peer, reason: no certificate | unknown pin | tls error, detail); rate-limited",
    "tls.refusals_suppressed": "refused TLS handshakes beyond the rate limit, counted in one "
    "record at the end of their window (listener, refused, peers, peers_listed, window_from, "
    "window_s)",
    # exercises on the twin (`cordon drill`), in the drill's own log
    "drill.started": "a cyber-crisis exercise began on a twin (scenario, inventory, sandbox, hit, "
    "roles, objectives; scenario_sha256, sandbox_sha256: the two files, kept as evidence)",
    "drill.finished": "an exercise ended, its twin down (outcome, steps, flows: per must-survive "
    "flow the probes sent and failed and the worst outage, error)",
    # the trail itself
    "audit.syslog_failed": "a seal could not be sent to the syslog target (error)",
}

VOCABULARY = MappingProxyType(_EVENTS)
