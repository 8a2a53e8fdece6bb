"""One device step sent as a transaction: the checks before anything is sent (journal still the
file, audit disk not full, no stop asked), the guarded apply with its dead-man (an on-device
revert timer where the platform has one, the controller re-applying the fail-safe state where it
has not), the read-back, and the journal settled from what the device shows. Imports the
drivers' protocol, the platform registry (which method changes packet rules, how their
read-back is built, how a method reaches its device), state, the journal's rows, audit (the
log's disk) and the run's context and model; no other run part."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from agent import audit
from agent.audit.pgchain import AuditFenced
from agent.drivers.base import ChangeSet, Driver, Expectation, Facts, mismatches
from agent.engine.journal import StepRow
from agent.errors import (
    AuditArmed,
    AuditError,
    ConnectError,
    CordonError,
    DeviceError,
    FencedError,
    RunError,
    RunStopped,
    StateLostError,
)
from agent.network.state import NORMAL, DeviceState
from agent.platforms import registry
from agent.platforms.capabilities import DeadMan, having
from agent.run.context import Context
from agent.run.model import StepOutcome
from agent.status import StepStatus

T = TypeVar("T")


def expectation(method: str, before: DeviceState, after: DeviceState) -> Expectation:
    """What the device must show once a change from `before` to `after` is applied: for a
    platform's rules method, its table exactly `after`'s rules (none: no table)."""
    rules = registry.rules(method)
    if rules is not None:
        return Expectation(table_present=bool(after.rules), rule_comments=rules.comments(after))
    changed = {i for i, m in before.down ^ after.down if m == method}
    return Expectation(admin_up={i: i not in after.down_interfaces for i in sorted(changed)})


def _only(state: DeviceState, method: str) -> DeviceState:
    """The part of `state` a method is responsible for (its rules, or its shut interfaces)."""
    if registry.rules(method) is not None:
        return DeviceState(rules=state.rules)
    return DeviceState(down=frozenset((i, m) for i, m in state.down if m == method))


def merged(ctx: Context, device: str, method: str, target: DeviceState) -> DeviceState:
    """A device's recorded state with only `method`'s part (its packet rules, or the interfaces
    that method shut) replaced by `target`'s."""
    return merge_onto(ctx.journal.device_state(device) or NORMAL, method, target)


def merge_onto(cur: DeviceState, method: str, target: DeviceState) -> DeviceState:
    """`cur` with only `method`'s part replaced by `target`'s (see `merged`)."""
    mine = _only(target, method)
    if registry.rules(method) is not None:
        return DeviceState(down=cur.down, rules=mine.rules)
    other = frozenset((i, m) for i, m in cur.down if m != method)
    return DeviceState(down=other | mine.down, rules=cur.rules)


# -- before anything is sent ----------------------------------------------------------------------


def before_send(ctx: Context, row: StepRow, *, forward: bool = True) -> None:
    """Checked before a step's intent is journaled: the journal is still the file at its path
    (SQLite writes on into a deleted or replaced file without a word), the audit log has room,
    and (going forward) nobody asked the run to stop. Raises: nothing is sent."""
    where = f"run {row.run_id}: stopped before {row.step} on {row.device}"
    lost = ctx.journal.lost()
    if lost is not None:
        ctx.obs.journal_lost(row, lost, where)
        raise RunError(
            f"{lost} while the run was running; {where}: nothing more is sent",
            hint="what was sent is in the audit log (`cordon audit report --run "
            f"{row.run_id}`); the devices keep it: check them, then restore the state "
            "directory from a backup or roll back by hand",
        )
    check_audit_space(ctx, f"{where}, nothing sent")
    if forward:
        why = ctx.journal.stop_requested(row.run_id)
        if why:
            raise RunStopped(f"{where}: {why}")


def check_audit_space(ctx: Context, where: str) -> None:
    """Refuse to send anything while the audit log's disk has less than the minimum free
    (`CORDON_AUDIT_MIN_FREE_MB`): a change must never outrun its record."""
    log_dir = audit.current_log_dir()
    # The writer makes its directory at the first record: measure the disk it will be on.
    probe = next((p for p in (log_dir, *log_dir.parents) if p.exists()), log_dir)
    try:
        free = shutil.disk_usage(probe).free
    except OSError as exc:
        raise AuditError(f"the audit log {log_dir} cannot be read: {exc.strerror}") from exc
    if free < ctx.audit_min_free * 2**20:
        raise AuditError(
            f"the audit log {log_dir} has {free / 2**20:.1f} MiB free, under the "
            f"{ctx.audit_min_free:g} MiB minimum (CORDON_AUDIT_MIN_FREE_MB): {where}",
            hint="free space on the log directory's disk, then try again "
            "(an open run: `cordon resume RUN_ID`)",
        )


# -- one step forward -----------------------------------------------------------------------------


def apply(ctx: Context, row: StepRow) -> StepOutcome:
    """Send one pending step and settle it from the read-back: verified or failed."""
    before_send(ctx, row)
    t = time.perf_counter()
    outcome = StepOutcome(row.seq, row.site, row.step, row.device, row.method, StepStatus.STARTED)
    ctx.obs.step_started(row)
    try:
        # a step declared fail-open must not stay closed if we lose the device mid-way
        guarded(
            ctx,
            row,
            row.commands,
            row.before,
            row.after,
            revert=row.undo,
            guard=row.guard_apply,
            action=row.step,
            on_applied=lambda: ctx.obs.step_applied(row),
        )
    except AuditArmed:
        # an on-device revert is armed and nothing more may be sent without a trail: the
        # device goes back by itself; the step stays in flight for `resume` to read
        raise
    except AuditError as exc:
        # the device may well have changed: journal what it shows, then stop sending
        shown = _settle_unaudited(ctx, row)
        raise AuditError(
            f"run {row.run_id}: the audit trail failed during {row.step} on "
            f"{row.device} ({exc.message}); the device {shown}; the run stops: nothing "
            "more is sent",
            hint=f"free the audit log's disk, then `cordon resume {row.run_id}`",
        ) from exc
    except (StateLostError, FencedError):
        # the state database went away mid-step, or this node's term ended: the device is not
        # known to have failed; the step stays in flight (journaled started or applied) for
        # `resume` (the active node's) to read
        raise
    except CordonError as exc:
        outcome.status, outcome.error = StepStatus.FAILED, exc.message
        ctx.obs.step_failed(row, exc.message)
    else:
        outcome.status = StepStatus.VERIFIED
        ctx.obs.step_verified(
            row, merged(ctx, row.device, row.method, row.after), time.perf_counter() - t
        )
    outcome.duration_s = time.perf_counter() - t
    ctx.obs.step_done(row, outcome.status)
    if ctx.pause:
        time.sleep(ctx.pause)
    return outcome


def _settle_unaudited(ctx: Context, row: StepRow) -> str:
    """After the trail failed mid-step: read the device (a read that writes no audit record)
    and journal what it shows: the step's target (verified), its start (failed: nothing
    applied), or neither (left in flight for `resume`)."""
    try:
        facts: Facts = ctx.pool.run(row.device, lambda d: d.facts(), via=registry.via(row.method))
    except CordonError as exc:
        return f"cannot be read ({exc.message}): the step stays in flight for `resume`"
    if _facts_show(facts, row.method, row.before, row.after):
        ctx.obs.step_settled(
            row, StepStatus.VERIFIED, merged(ctx, row.device, row.method, row.after)
        )
        return "shows the change applied (journaled as verified)"
    if _facts_show(facts, row.method, row.after, row.before):
        ctx.obs.step_marked(row, StepStatus.FAILED, "audit trail failed: nothing applied")
        return "shows nothing applied (journaled as failed)"
    return "shows neither state: the step stays in flight for `resume`"


def _facts_show(facts: Facts, method: str, frm: DeviceState, to: DeviceState) -> bool:
    """Do facts read from a device show the change `frm` -> `to` (for this method)?"""
    exp = expectation(method, frm, to)
    rules = registry.rules(method)
    if rules is None:
        return not mismatches(facts, exp)
    present = bool(facts.ours.strip())
    comments = rules.comments_in(facts.ours)
    return present == exp.table_present and (
        exp.rule_comments is None or comments == set(exp.rule_comments)
    )


def shows(ctx: Context, row: StepRow, frm: DeviceState, to: DeviceState) -> bool:
    """Does the device already show `to` (for this step's method)? One read, no polling."""
    try:
        ctx.pool.run(
            row.device,
            verifier(expectation(row.method, frm, to), f"{row.step}.check", timeout=0.0),
            via=registry.via(row.method),
        )
    except DeviceError:
        return False
    return True


# -- the guarded apply and its dead-man -----------------------------------------------------------


def guarded(
    ctx: Context,
    row: StepRow,
    lines: Sequence[str],
    frm: DeviceState,
    to: DeviceState,
    *,
    revert: Sequence[str],
    guard: bool,
    action: str,
    on_applied: Callable[[], None] | None = None,
) -> None:
    """Apply `lines` and verify the device reached `to`. With `guard` (the target is not the
    step's fail-safe state), a revert to `frm` is armed on the device first where the platform
    allows and confirmed after read-back; where it does not, losing the device makes the
    controller re-apply `frm` as soon as the device answers again. An armed revert never
    outlives its step: on any other failure it is applied now and disarmed."""
    how = registry.via(row.method)
    back = ChangeSet(tuple(revert), action=f"deadman {action}")
    token = _arm(ctx, row, back) if guard else None
    try:
        change = ChangeSet(tuple(lines), action=action)
        ctx.pool.run(row.device, sending(ctx, row, action, applier(change)), via=how)
        if on_applied is not None:
            on_applied()
        exp = expectation(row.method, frm, to)
        ctx.pool.run(row.device, verifier(exp, f"{action}.verify"), via=how)
    except ConnectError as exc:
        if guard and token is None:
            _recover(ctx, row, revert, to, frm, exc)
        raise  # with a token, the device's own timer restores the fail-safe state
    except (StateLostError, FencedError):
        # this node lost the state database or its lease: it sends nothing more, as if it had
        # been killed here; the active node's `resume` reads the device (an armed timer runs)
        raise
    except AuditFenced as exc:
        # the drivers audit right after sending: the group's trail says this node was deposed.
        # It steps down (as for a fenced journal write) and sends nothing more: no restore, no
        # confirm (an armed timer puts the device back by itself)
        raise ctx.journal.deposed(exc.message) from exc
    except AuditError as exc:
        # no trail can be written: nothing more is sent (a restore would be an unrecorded
        # command); an armed timer puts the device back by itself
        if token is None:
            raise
        raise AuditArmed(
            f"{exc.message}; {row.device}: its on-device revert (armed for {ctx.deadman:g} s) "
            f"puts it back in its fail-safe state by itself: nothing more is sent, {action} "
            "stays in flight",
            hint=exc.hint,
        ) from exc
    except CordonError:
        if token is not None:
            _restore_now(ctx, row, back, token)
        raise
    if token is not None and not ctx.pool.run(
        row.device, sending(ctx, row, f"{action} confirmation", _confirmer(token)), via=how
    ):
        raise RunError(
            f"{row.device}: the dead-man timer fired before {action} was "
            "confirmed: the device went back to its fail-safe state by itself",
            hint="check the management path, then try again",
        )


def sending(
    ctx: Context, row: StepRow, what: str, fn: Callable[[Driver], T]
) -> Callable[[Driver], T]:
    """`fn` (a device command) checked right before it is sent, the device's session in hand
    (it may have been waited for, or connected): this node's term still live by its own clock
    (`Journal.may_send`); otherwise `FencedError`, nothing sent."""

    def send(d: Driver) -> T:
        ctx.journal.may_send(f"{what} on {row.device} (run {row.run_id})")
        return fn(d)

    return send


def _arm(ctx: Context, row: StepRow, revert: ChangeSet) -> str | None:
    """Arm an on-device revert where the platform allows it (its driver is a `DeadMan`) for a
    change its own session makes: its packet rules, or any change (an interface reopened by
    `cli`) where that revert restores the whole configuration (`Spec.reverts_config`). A change
    over a cross-platform method (SNMP) never arms it: the controller's dead-man covers it."""
    if ctx.deadman <= 0 or registry.via(row.method) != "ssh":
        return None
    if registry.rules(row.method) is None and not _reverts_config(ctx, row.device):
        return None
    seconds = ctx.deadman

    def arm(d: Driver) -> str | None:
        return dm.arm_revert(revert, seconds) if (dm := having(d, DeadMan)) is not None else None

    return ctx.pool.run(row.device, sending(ctx, row, f"{revert.action} arming", arm))


def _reverts_config(ctx: Context, device: str) -> bool:
    found = ctx.inv.find_device(device)
    return found is not None and registry.platform(found[1].platform).reverts_config


def _restore_now(ctx: Context, row: StepRow, back: ChangeSet, token: str) -> None:
    """The step failed with the device reachable: restore the fail-safe state ourselves and
    disarm the timer, so it cannot reload an old table later over newer changes."""
    how = registry.via(row.method)
    try:
        ctx.pool.run(row.device, sending(ctx, row, back.action, applier(back)), via=how)
        ctx.pool.run(row.device, sending(ctx, row, back.action, _confirmer(token)), via=how)
    except FencedError:  # this node's term ended: nothing more sent, the armed timer reverts
        raise
    except CordonError as exc:
        ctx.obs.deadman_restore_failed(row, exc.message)


def _recover(
    ctx: Context,
    row: StepRow,
    lines: Sequence[str],
    frm: DeviceState,
    to: DeviceState,
    cause: ConnectError,
) -> None:
    """Controller-side dead-man: the device was lost mid-transition and has no timer of its
    own: re-apply the fail-safe state as soon as it answers, for up to `deadman` seconds."""
    how = registry.via(row.method)
    deadline = time.monotonic() + max(ctx.deadman, 1.0)
    ctx.obs.deadman_controller(row, cause.message)
    while time.monotonic() < deadline:
        try:
            change = ChangeSet(tuple(lines), action="deadman")
            ctx.pool.run(row.device, sending(ctx, row, "deadman", applier(change)), via=how)
            ctx.pool.run(
                row.device, verifier(expectation(row.method, frm, to), "deadman.verify"), via=how
            )
        except ConnectError:
            time.sleep(1.0)
            continue
        ctx.obs.deadman_reverted(row)
        return
    ctx.obs.deadman_unreachable(row)


def applier(changes: ChangeSet) -> Callable[[Driver], object]:
    return lambda d: d.apply(changes)


def verifier(
    exp: Expectation, action: str, timeout: float | None = None
) -> Callable[[Driver], object]:
    return lambda d: d.verify(exp, timeout=timeout, action=action)


def _confirmer(token: str) -> Callable[[Driver], bool]:
    return lambda d: (dm := having(d, DeadMan)) is not None and dm.confirm(token)
