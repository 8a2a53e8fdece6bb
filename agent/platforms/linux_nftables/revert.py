"""Owns the linux_nftables dead-man: a revert script armed on the firewall that a detached timer
loads unless the agent confirms in time (it survives losing the session and the agent). Runs its
commands through the driver's shell (`Runner`); imports this folder's parser, the shared trail,
the driver contract, audit's scrubber and errors; no device library."""

from __future__ import annotations

import secrets
from typing import Protocol

from agent.audit.redact import scrub
from agent.drivers import trail
from agent.drivers.base import CORDON_TABLE, ChangeSet, Target
from agent.drivers.ssh import Run
from agent.errors import CommandRejected, DeviceError
from agent.platforms.linux_nftables import parse

# Where armed revert scripts wait on the firewall (tmpfs: a reboot disarms nothing it needs).
DEADMAN_DIR = "/run/cordon"

_FAMILY, _TABLE = CORDON_TABLE.split()


class Runner(Protocol):
    """One command on the firewall's shell (the driver's `_run`)."""

    def __call__(self, command: str, *, operation: str, stdin: str | None = None) -> Run: ...


def arm(target: Target, run: Runner, changes: ChangeSet, seconds: float) -> str:
    """Arm an on-device revert: unless `confirm`ed within `seconds`, the device loads `changes` by
    itself. Checked with `nft -c` first. Returns a token for `confirm`."""
    commands = tuple(changes.commands)
    try:
        parse.check_nft_scope(commands, family=_FAMILY, table=_TABLE)
    except ValueError as exc:
        raise DeviceError(target.name, "arm", f"revert script refused: {exc}") from None
    script = "\n".join(commands) + "\n"
    check = run("nft -c -f -", stdin=script, operation="arm")
    if check.rc != 0:
        raise CommandRejected(target.name, "arm", "nft -c -f -", scrub(check.err or check.out))
    token = secrets.token_hex(6)
    path = f"{DEADMAN_DIR}/cordon-deadman-{token}.nft"
    wrote = run(f"umask 077; mkdir -p {DEADMAN_DIR}; cat > {path}", stdin=script, operation="arm")
    timer = f"sleep {seconds:g}; [ -e {path} ] && nft -f {path} && mv {path} {path}.fired"
    started = run(f"setsid nohup sh -c '{timer}' >/dev/null 2>&1 & echo $!", operation="arm")
    if wrote.rc != 0 or started.rc != 0:
        raise DeviceError(
            target.name,
            "arm",
            f"could not arm the dead-man timer: {scrub(wrote.err + started.err).strip()}",
        )
    trail.change(
        target,
        via="ssh",
        action=f"{changes.action}.arm",
        commands=(),
        outcome="ok",
        duration_s=0.0,
        output=f"revert armed for {seconds:g} s",
    )
    return token


def confirm(target: Target, run: Runner, token: str) -> bool:
    """Disarm; True if disarmed in time, False if the revert already ran on the device."""
    path = f"{DEADMAN_DIR}/cordon-deadman-{token}.nft"
    done = run(f"rm {path} 2>/dev/null || {{ rm -f {path}.fired; false; }}", operation="confirm")
    fired = done.rc != 0
    trail.change(
        target,
        via="ssh",
        action="deadman.confirm",
        commands=(),
        outcome="fired" if fired else "ok",
        duration_s=0.0,
    )
    return not fired
