"""A `Stack`'s daemon on the twin, for the twin tests that drive it through the real CLI
(tests/daemon/test_daemon_twin.py, tests/audit/test_drafts_twin.py, tests/view/test_view_twin.py):
every flow open before it starts; afterwards every run rolled back (newest first), the daemon
stopped by PID and every flow open again. And what the reconnection tests share
(tests/daemon/test_daemon_twin.py, tests/ha/test_soak_failover_twin.py): the recovered site, its
zones' attestations, the flow matrix a plan announces, a soak gate seen open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent.lab import ready
from tests.conftest import Twin, matrix
from tests.daemon.test_daemon_cli import OPEN, Daemon, Stack, show_until, wait_until

RECOVERED = "rennes-la-sagesse"  # the site the reconnection tests isolate, then reconnect
ZONES = (
    "servers",
    "icu",
    "neonatology",
    "biomedical",
    "telephony",
    "imaging",
    "lab",
    "sterilisation",
    "pharmacy",
    "admin",
    "building",
)
# `cordon run reconnect`'s attestations: every zone of RECOVERED clean
ATTEST = tuple(x for z in ZONES for x in ("--attest", f"{z}=reimaged, scanned clean (drill)"))


@dataclass
class Live:
    """A daemon (restartable) of `s` on the twin, and its CLI."""

    s: Stack
    daemon: Daemon
    poll_interval: float = 0

    def restart(self) -> None:
        self.daemon = self.s.daemon(poll_interval=self.poll_interval).ready()

    def run(self, *args: str, user: str) -> dict[str, Any]:
        """`cordon run ... --yes --json` to its end (or start, with --detach): the run's JSON."""
        done = self.s.cordon("run", *args, "--yes", "--json", user=user, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    def site(self, name: str) -> dict[str, Any]:
        status = self.s.ok_json("status", user="dave")
        return dict(next(x for x in status["sites"] if x["site"] == name))


@contextmanager
def on_the_twin(s: Stack, twin: Twin, *, poll_interval: float = 0) -> Iterator[Live]:
    """`s`'s daemon on the twin, every flow open before (the twin's own readiness check);
    afterwards every run rolled back, newest first, through a daemon (started again if the test
    stopped it), the daemon stopped by PID, and every flow of the twin open again."""
    ready.check(twin.inv, twin.bp)
    live = Live(s, s.daemon(poll_interval=poll_interval).ready(), poll_interval)
    try:
        yield live
    finally:
        try:
            if live.daemon.proc.poll() is not None:
                live.restart()
            for run in s.ok_json("runs", "--limit", "1000", user="dave")["runs"]:
                back = s.cordon("rollback", run["run_id"], "--json", user="bob", timeout=600)
                assert back.returncode == 0, back.stdout + back.stderr
        finally:
            live.daemon.ensure_stopped()
        assert wait_until(lambda: all(matrix(twin).values()), timeout=20)


def expected_after(plan: dict[str, Any]) -> dict[str, bool]:
    """The flow matrix `plan` (`cordon plan --json`) announces: flow -> open afterwards."""
    return {fi["flow"]: fi["change"] in ("stays open", "reopened") for fi in plan["impact"]}


def soak_gate(
    s: Stack, run_id: str, step: str, *, ticked: bool = False, timeout: float = 180
) -> dict[str, Any]:
    """Wait until the soak gate `step` of the run is open (soaking), with at least one tick if
    `ticked`, and return it (fails if the run ended first)."""
    run = show_until(
        s,
        run_id,
        lambda r: (
            r["status"] not in OPEN
            or any(
                g["step"] == step
                and g["status"] == "open"
                and (not ticked or int(g["detail"].get("ticks", 0)))
                for g in r["gates"]
            )
        ),
        timeout=timeout,
    )
    gate = next((g for g in run["gates"] if g["step"] == step), None)
    assert gate is not None and gate["status"] == "open", run
    return dict(gate)
