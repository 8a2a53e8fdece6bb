"""The one exception tree of Cordon. Every module raises these; only `agent.cli` renders them.

Imports nothing from the project. Messages say what happened, where, what to do; never a secret.

    CordonError
    ├── ConfigError                   bad input: nothing was touched
    │   ├── InventoryError            an inventory file is invalid
    │   ├── PlaybookError             a playbook file is invalid
    │   ├── ProbeConfigError          a probe point's config file is invalid
    │   ├── SecretError               a secret reference cannot be resolved safely
    │   └── NotFound                  a run, incident, site or zone a request names does not exist
    ├── PlanError                     a valid playbook cannot be planned (invariant, unsupported)
    ├── RunError                      the engine refused or failed a run
    │   ├── LockError                 a site is held by another run
    │   └── RunStopped                a run stopped at a step boundary on request (a rollback)
    ├── DeviceError                   a device operation failed (names device and operation)
    │   ├── ConnectError              unreachable, refused, or management path down
    │   │   └── DeviceTimeout         no answer within the configured bound
    │   ├── AuthError                 credentials refused
    │   ├── HostKeyError              unknown or changed SSH host key (never auto-accepted)
    │   ├── CertificateError          TLS certificate not the pinned one (never auto-accepted)
    │   ├── CommandRejected           the device rejected a command (carries its output)
    │   ├── VerifyError               read-back does not show the intended state
    │   └── SnmpError                 SNMP error status (noSuchName, notWritable, ...)
    ├── AuditError                    the audit log cannot be written or is inconsistent
    │   ├── ChainBroken               verification found tampering (names the first bad record)
    │   ├── TailUnsealed              the chain verifies but its last records are not sealed yet
    │   └── TornWrite                 the newest file ends with a cut last write (not tampering)
    ├── LabError                      the digital twin cannot be built, probed or torn down
    │   └── SafetyError               a twin operation would leave the 198.18.0.0/15 sandbox
    ├── ProbeError                    a probe point: bad config or order, unreachable, not pinned
    ├── DaemonError                   talking to `cordon daemon`
    │   ├── DaemonDown                it is not running (the CLI offers --local)
    │   ├── AccessRefused             the caller's role does not allow it (audited)
    │   └── ApprovalError             two-person rule: own run, nothing to approve, expired
    └── InternalError                 a bug: Cordon broke one of its own invariants (a status
                                      change its table forbids, a status it does not know)
"""

from __future__ import annotations


class CordonError(Exception):
    """Base of every error Cordon raises on purpose.

    `hint` says what the user can do about it; the CLI prints it under the message.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(CordonError):
    """Invalid input file or reference; raised before any device is touched."""

    exit_code = 2


class Issue:
    """One problem found in an input file: where it is (file, path, line) and what is wrong."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, path: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.path = path
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "path": self.path, "line": self.line, "message": self.message}


class _IssuesError(ConfigError):
    kind = "input"

    def __init__(self, issues: list[Issue], *, hint: str | None = None) -> None:
        self.issues = issues
        head = f"invalid {self.kind}: {len(issues)} problem{'s' if len(issues) != 1 else ''}"
        body = "\n".join(f"  {i}" for i in issues)
        super().__init__(f"{head}\n{body}", hint=hint)


class InventoryError(_IssuesError):
    kind = "inventory"


class PlaybookError(_IssuesError):
    kind = "playbook"


class ProbeConfigError(_IssuesError):
    kind = "probe config"


class ScenarioError(_IssuesError):
    kind = "drill scenario"


class SecretError(ConfigError):
    """A secret reference is malformed, missing, or stored unsafely (the value is never shown)."""


class NotFound(ConfigError):
    """A run, incident, site or zone named by a request does not exist (HTTP 404; exit code 2)."""


class PlanError(CordonError):
    exit_code = 3


class RunError(CordonError):
    exit_code = 4


class LockError(RunError):
    exit_code = 5


class RunStopped(RunError):
    """Someone asked the run to stop (a rollback from another process): it stopped before
    sending its next step."""


class DeviceError(CordonError):
    """A device operation failed. Always names the device and the operation."""

    exit_code = 6

    def __init__(
        self, device: str, operation: str, message: str, *, hint: str | None = None
    ) -> None:
        self.device = device
        self.operation = operation
        super().__init__(f"{device}: {operation}: {message}", hint=hint)


class ConnectError(DeviceError):
    pass


class DeviceTimeout(ConnectError):
    pass


class AuthError(DeviceError):
    pass


class HostKeyError(DeviceError):
    def __init__(
        self, device: str, operation: str, message: str, *, expected: str | None, seen: str
    ) -> None:
        self.expected = expected
        self.seen = seen
        super().__init__(
            device,
            operation,
            f"{message} (pinned: {expected or 'none'}, presented: {seen})",
            hint="verify the device's key out of band, then update its pin in the inventory",
        )


class CertificateError(DeviceError):
    """The device's TLS certificate is not the pinned one, or no pin exists: nothing was sent."""

    def __init__(self, device: str, operation: str, *, expected: str | None, seen: str) -> None:
        self.expected = expected
        self.seen = seen
        super().__init__(
            device,
            operation,
            f"TLS certificate not pinned for this device (pinned: {expected or 'none'}, "
            f"presented: {seen}); nothing was sent",
            hint="verify the device's certificate out of band, then set its pin "
            "(https.certificate or a line in group.tls_pins)",
        )


class CommandRejected(DeviceError):
    def __init__(self, device: str, operation: str, command: str, output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(device, operation, f"command {command!r} rejected: {output.strip()}")


class VerifyError(DeviceError):
    pass


class SnmpError(DeviceError):
    pass


class AuditError(CordonError):
    exit_code = 7


class ChainBroken(AuditError):
    exit_code = 8


class TailUnsealed(AuditError):
    """`audit verify`: every record verifies, but the newest ones are covered by no seal."""

    exit_code = 20


class TornWrite(AuditError):
    """`audit verify`: the last write was cut (crash, full disk); the records before it verify."""

    exit_code = 21


class LabError(CordonError):
    exit_code = 9


class SafetyError(LabError):
    exit_code = 10


class DrillError(CordonError):
    """An exercise (`cordon drill`) cannot be prepared or did not go as its scenario planned."""

    exit_code = 23


class ProbeError(CordonError):
    """A probe point (`cordon probe`): its config or an order is invalid, or the daemon side
    cannot reach it, or its certificate is not the pinned one (names the probe and the cause)."""

    exit_code = 22


class DaemonError(CordonError):
    """Talking to `cordon daemon`: not running, bad request, or a refused order."""

    exit_code = 11


class DaemonDown(DaemonError):
    exit_code = 12


class AccessRefused(DaemonError):
    """The caller's role does not allow this (audited as access.refused)."""

    exit_code = 13


class ApprovalError(DaemonError):
    """Two-person rule: approving one's own run, a run not awaiting approval, an expired one."""

    exit_code = 14


class StandbyError(DaemonError):
    """This daemon is a standby (another node holds the active lease): it changes nothing; the
    message names the active node."""

    exit_code = 25


class FencedError(StandbyError):
    """A journal write that precedes a device command was refused: this node no longer holds the
    active lease with its epoch (a standby took over). Nothing was written, nothing is sent;
    the node steps down."""

    exit_code = 26


class StateLostError(DaemonError):
    """The PostgreSQL state database could not be used (the server down or restarting, the
    connection lost): the message says whether the transaction wrote nothing or its commit's
    outcome is unknown. A step in flight is left for `resume` to settle by reading its device;
    a daemon sharing the database steps down until the database answers again."""

    exit_code = 27


class InternalError(CordonError):
    """A bug, never bad input: the engine tried what its own rules forbid (a status change
    outside `agent.status`'s tables); nothing was written."""

    exit_code = 1


class AuditArmed(AuditError):
    """The audit trail failed right after a device command whose on-device revert is armed:
    nothing more is sent (a restore would go unrecorded); the device reverts by itself and the
    step stays in flight for `resume` to read."""
