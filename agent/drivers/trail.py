"""Owns the drivers' audit records (`device.change`, `device.verify`) and read-back polling.
Must not import netmiko, paramiko or pysnmp, nor build a log line by hand (audit API only)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.audit import get_logger, store_evidence
from agent.drivers.base import ApplyResult, ChangeSet, Facts, Target
from agent.errors import CommandRejected, DeviceError, DeviceTimeout, SnmpError, VerifyError


def change(
    target: Target,
    *,
    via: str,
    action: str,
    commands: Sequence[str],
    outcome: str,
    duration_s: float,
    output: str | None = None,
    error: str | None = None,
) -> None:
    """One `device.change` record: what was sent, how it ended; the output as evidence."""
    extra: dict[str, Any] = {}
    if output:
        extra["output_sha256"] = store_evidence(output)
    if error:
        extra["error"] = error
    log = get_logger()
    emit = log.info if outcome == "ok" else log.error
    emit(
        "device.change",
        device=target.name,
        platform=str(target.device.platform),
        via=via,
        action=action,
        commands=list(commands),
        outcome=outcome,
        duration_s=round(duration_s, 4),
        **extra,
    )


def verify(
    target: Target,
    *,
    via: str,
    action: str,
    outcome: str,
    duration_s: float,
    polls: int,
    mismatches: Sequence[str] = (),
) -> None:
    """One `device.verify` record: read-back outcome, how many reads it took, what differed."""
    log = get_logger()
    emit = log.info if outcome == "ok" else log.error
    emit(
        "device.verify",
        device=target.name,
        platform=str(target.device.platform),
        via=via,
        action=action,
        outcome=outcome,
        duration_s=round(duration_s, 4),
        polls=polls,
        mismatches=list(mismatches),
    )


def verify_loop(
    target: Target,
    *,
    via: str,
    action: str,
    read: Callable[[], tuple[Facts, list[str]]],
    timeout: float,
    interval: float = 0.2,
) -> Facts:
    """Call `read` (facts, mismatches) until nothing mismatches or `timeout` passes; log the
    outcome; raise VerifyError listing the last mismatches. A device error inside `read` is
    logged as the outcome and re-raised."""
    t0 = time.monotonic()
    polls = 0
    while True:
        polls += 1
        try:
            facts, wrong = read()
        except DeviceError as exc:
            verify(
                target,
                via=via,
                action=action,
                outcome="error",
                duration_s=time.monotonic() - t0,
                polls=polls,
                mismatches=[exc.message],
            )
            raise
        if not wrong:
            verify(
                target,
                via=via,
                action=action,
                outcome="ok",
                duration_s=time.monotonic() - t0,
                polls=polls,
            )
            return facts
        if time.monotonic() - t0 + interval > timeout:
            verify(
                target,
                via=via,
                action=action,
                outcome="mismatch",
                duration_s=time.monotonic() - t0,
                polls=polls,
                mismatches=wrong,
            )
            raise VerifyError(
                target.name,
                "verify",
                f"read-back after {polls} read(s) in {time.monotonic() - t0:.1f} s does not "
                f"show the intended state: {'; '.join(wrong)}",
                hint="the change may be partial: read the device's facts and decide",
            )
        time.sleep(interval)


def outcome_of(exc: DeviceError) -> str:
    """How a failed change ended, in the trail's words."""
    if isinstance(exc, CommandRejected | SnmpError):
        return "rejected"
    if isinstance(exc, DeviceTimeout):
        return "timeout"
    return "failed"


def change_failed(
    target: Target,
    *,
    via: str,
    changes: ChangeSet,
    commands: Sequence[str],
    exc: DeviceError,
    started: float,
) -> None:
    """The `device.change` record of a change set that raised `exc` (the device's output kept)."""
    change(
        target,
        via=via,
        action=changes.action,
        commands=commands,
        outcome=outcome_of(exc),
        duration_s=time.monotonic() - started,
        output=exc.output if isinstance(exc, CommandRejected) else None,
        error=exc.message,
    )


def change_applied(
    target: Target,
    *,
    via: str,
    changes: ChangeSet,
    commands: Sequence[str],
    output: str,
    started: float,
) -> ApplyResult:
    """The `device.change` record of a change set the device took, and its `ApplyResult`."""
    duration = time.monotonic() - started
    change(
        target,
        via=via,
        action=changes.action,
        commands=commands,
        outcome="ok",
        duration_s=duration,
        output=output or None,
    )
    return ApplyResult(target.name, changes.action, tuple(commands), output, duration)
