"""`cordon daemon` on the twin, driven through the real `cordon` CLI: a break-glass isolation
seen in `status` and in real TCP flows, then rolled back; a two-person restore that waits for a
second operator; a reconnection whose soak survives a SIGTERM and a SIGKILL of the daemon; and
a firewall table deleted by hand, caught by the daemon's next poll as a drift alarm.

Every test rolls back what it did (newest run first) and stops its daemon by PID."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab import netns
from agent.platforms import registry
from tests.conftest import Twin, matrix
from tests.daemon.on_twin import (
    ATTEST,
    RECOVERED,
    Live,
    expected_after,
    on_the_twin,
    soak_gate,
)
from tests.daemon.test_daemon_cli import (
    APPROVAL,
    DOWN,
    OPEN,
    Stack,
    show_until,
    wait_until,
)

pytestmark = pytest.mark.twin

POLL_S = 2.0


@pytest.fixture
def live(twin: Twin, tmp_path: Path) -> Iterator[Live]:
    """A daemon polling every 2 s; afterwards every run rolled back, newest first (through a
    daemon, restarted if the test stopped it), the daemon stopped, the twin all open again."""
    with on_the_twin(Stack(tmp_path, isolate_net=False), twin, poll_interval=POLL_S) as lv:
        yield lv


def test_break_glass_isolation_then_rollback(live: Live, twin: Twin) -> None:
    """alice (on call) puts a site in preventive degraded mode with a reason: status shows it
    isolated, real flows are cut exactly as planned; bob's rollback opens them all again."""
    site = "nantes-jules-verne"
    plan = live.s.ok_json("plan", "preventive-degraded", "-s", site, user="alice")
    done = live.s.cordon(
        "run",
        "preventive-degraded",
        "-s",
        site,
        "--yes",
        "--reason",
        "attack at Rennes: preventive",
        user="alice",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "break-glass" in done.stdout
    # the firewall's step, by its own rules method (a FortiGate in the example: fortios)
    found = twin.inv.find_device("nts-fw1")
    assert found is not None
    fw_rules = registry.platform(str(found[1].platform)).rules
    assert fw_rules is not None
    assert f"nts-fw1 ({fw_rules.method}): verified" in done.stdout
    run_id = live.s.ok_json("runs", user="dave")["runs"][0]["run_id"]
    assert f"run {run_id}: done" in done.stdout

    st = live.site(site)
    assert (st["mode"], st["level"], st["by"], st["run_id"]) == ("isolated", "L2", "alice", run_id)
    assert st["locked_by"] is None
    shown = live.s.ok_json("show", run_id, user="dave")
    assert shown["break_glass"] is True
    assert shown["reason"] == "attack at Rennes: preventive"
    assert any(e.get("run_id") == run_id for e in live.s.events("run.break_glass"))
    expected = expected_after(plan)
    assert not expected["nts-ehr-core"]
    assert wait_until(lambda: matrix(twin) == expected, timeout=20)

    back = live.s.cordon("rollback", run_id, user="bob", timeout=600)
    assert back.returncode == 0, back.stdout + back.stderr
    assert f"run {run_id}: rolled back" in back.stdout
    assert live.site(site)["mode"] == "normal"
    assert wait_until(lambda: all(matrix(twin).values()), timeout=20)


def test_two_person_restore_waits_for_a_second_operator(live: Live, twin: Twin) -> None:
    """restore-normal waits, sending nothing, until a second operator approves; its author
    cannot; once carol approves, the daemon runs it and the site is back to normal."""
    site = "fontenay-sud-vendee"
    isolated = live.run("preventive-degraded", "-s", site, user="bob")
    assert isolated["status"] == "done"
    cut = matrix(twin)
    assert not all(cut.values())

    started = live.s.ok_json(
        "run", "restore-normal", "-s", site, "--yes", "--detach", "--reason", "clean", user="bob"
    )
    run_id = started["run_id"]
    assert started["status"] == "awaiting_approval"
    held = show_until(live.s, run_id, lambda r: r["waiting"], timeout=60)
    assert "approval by a second operator" in held["waiting"]
    waiting = [r["run_id"] for r in live.s.ok_json("status", user="dave")["open_runs"]]
    assert waiting == [run_id]

    own = live.s.cordon("approve", run_id, user="bob")
    assert own.returncode == APPROVAL, own.stderr
    assert {s["status"] for s in live.s.ok_json("show", run_id, user="dave")["steps"]} == {
        "pending"
    }
    assert matrix(twin) == cut  # nothing was sent

    approved = live.s.cordon("approve", run_id, "--reason", "crisis cell agrees", user="carol")
    assert approved.returncode == 0, approved.stderr
    final = show_until(live.s, run_id, lambda r: r["status"] not in OPEN, timeout=180)
    assert final["status"] == "done", final
    assert final["approval"]["actor"] == "carol"
    assert live.site(site)["mode"] == "normal"
    assert wait_until(lambda: all(matrix(twin).values()), timeout=20)


def test_soak_survives_daemon_restarts(live: Live, twin: Twin) -> None:
    """A reconnection soaking when the daemon gets SIGTERM, then (in a later soak) SIGKILL:
    each restarted daemon takes the run on, each soak continues to its recorded end (not
    started again), and the run finishes with every soak gate passed."""
    isolated = live.run("isolate-site", "-s", RECOVERED, user="bob")
    assert isolated["status"] == "done"
    started = live.s.ok_json(
        "run",
        "reconnect",
        "-s",
        RECOVERED,
        "--soak-seconds",
        "6",
        *ATTEST,
        "--yes",
        "--detach",
        user="bob",
    )
    run_id = started["run_id"]

    first = soak_gate(live.s, run_id, "soak-servers")
    assert live.daemon.stop(signal.SIGTERM) == 0
    assert live.s.cordon("status", user="dave").returncode == DOWN
    live.restart()
    second = soak_gate(live.s, run_id, "soak-life-critical")
    assert live.daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    live.restart()

    final = show_until(live.s, run_id, lambda r: r["status"] not in OPEN, timeout=600)
    assert final["status"] == "done", final
    gates = {g["step"]: g for g in final["gates"]}
    soaks = [g for name, g in gates.items() if name.startswith("soak-")]
    assert len(soaks) == 7
    assert {g["status"] for g in soaks} == {"passed"}, soaks
    # the same soaks, continued: their recorded end did not move across the restarts
    assert gates["soak-servers"]["detail"]["until"] == first["detail"]["until"]
    assert gates["soak-life-critical"]["detail"]["until"] == second["detail"]["until"]
    assert int(gates["soak-servers"]["detail"]["ticks"]) > int(first["detail"]["ticks"])
    resumed = [e for e in live.s.events("daemon.resume") if e.get("run_id") == run_id]
    assert len(resumed) == 2
    stopped = [e["signal"] for e in live.s.events("daemon.stopped")]
    assert stopped[0] == "SIGTERM"
    assert live.site(RECOVERED)["mode"] == "reconnected"


def test_hand_made_change_raises_a_drift_alarm(live: Live, twin: Twin) -> None:
    """After an isolation, someone deletes the firewall's cordon table by hand: the next poll
    shows a drift alarm on that site in `status`; after the rollback it clears."""
    site = "bretagne-etab-2"
    fw = "bz2-fw1"
    run = live.run("preventive-degraded", "-s", site, user="bob")
    assert run["status"] == "done"

    def polled_after(ts: float) -> dict[str, Any] | None:
        status = live.s.ok_json("status", user="dave")
        poll = status.get("last_poll")
        return status if poll and float(poll["at"]) > ts else None

    calm = wait_until(lambda: polled_after(float(run["finished_at"])), timeout=60)
    assert calm, "no poll after the run"
    assert [a for a in calm["drift_alarms"] if a["site"] == site] == []

    netns.run(["nft", "delete", "table", "inet", "cordon"], netns=twin.bp.device_ns[fw])

    def alarmed() -> dict[str, Any] | None:
        status = live.s.ok_json("status", user="dave")
        mine = [a for a in status["drift_alarms"] if a["device"] == fw]
        return status if mine else None

    status = wait_until(alarmed, timeout=60)
    assert status, "the daemon's poll never saw the deleted table"
    alarm = next(a for a in status["drift_alarms"] if a["device"] == fw)
    assert (alarm["site"], alarm["kind"], alarm["status"]) == (site, "table_missing", "open")
    row = next(x for x in status["sites"] if x["site"] == site)
    assert [a["device"] for a in row["drift"]] == [fw]
    text = live.s.cordon("status", user="dave")
    assert "DRIFT" in text.stdout
    assert f"{site}  {fw}: table inet cordon is missing" in text.stdout
    assert any(e.get("device") == fw for e in live.s.events("drift.alarm"))

    back = live.s.cordon("rollback", run["run_id"], user="bob", timeout=600)
    assert back.returncode == 0, back.stdout + back.stderr
    cleared = wait_until(
        lambda: (
            not [
                a
                for a in live.s.ok_json("status", user="dave")["drift_alarms"]
                if a["device"] == fw
            ]
        ),
        timeout=60,
    )
    assert cleared, "the alarm stayed open after the rollback"
