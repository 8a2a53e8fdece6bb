"""`cordon daemon` and its open-file limit: started with a soft limit of 1,024 it runs with the
hard limit and says so once; with a hard limit too low for the inventory's warm sessions it
refuses at start (exit 2, the figures), leaving no socket and no daemon.json.

The daemon runs in a network namespace of its own (as in tests/daemon/test_daemon_cli.py, whose
process helpers are used here), so nothing leaves the machine; root is needed."""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_root
from tests.daemon.test_daemon_cli import Daemon, Stack

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")


def daemon_args(s: Stack, soft: int, hard: int) -> list[str]:
    """`cordon daemon` as the other daemon tests start it, with RLIMIT_NOFILE (soft, hard)
    (prlimit and unshare exec it: the PID is the daemon's)."""
    return [
        "unshare",
        "--net",
        "--",
        "prlimit",
        f"--nofile={soft}:{hard}",
        "--",
        sys.executable,
        "-m",
        "agent",
        "daemon",
        "--inventory",
        str(s.inventory),
        "--state-dir",
        str(s.state),
        "--roles",
        str(s.roles),
        "--poll-interval",
        "0",
    ]


def open_files_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) of 'Max open files' in /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no 'Max open files' line")


def test_daemon_raises_its_soft_limit_to_the_hard_limit(tmp_path: Path) -> None:
    """Started with soft 1,024 under a higher hard limit, the daemon runs with soft = hard and
    its log says it raised the limit, once."""
    require_root()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the open-file hard limit ({hard}) is not above 1,024")
    top = 65536 if hard == resource.RLIM_INFINITY else hard
    s = Stack(tmp_path)
    daemon = Daemon(s, daemon_args(s, 1024, top)).ready()
    try:
        assert open_files_limit(daemon.pid) == (str(top), str(top))
    finally:
        assert daemon.stop() == 0
    log = daemon.log()
    assert log.count(f"open files: soft limit raised from 1,024 to {top:,}") == 1, log


def test_daemon_refuses_an_inventory_past_its_hard_limit(tmp_path: Path) -> None:
    """With a hard limit of 300 open files, the example group's warm sessions do not fit: the
    daemon exits 2 at start naming the inventory and both figures, and leaves nothing behind."""
    require_root()
    s = Stack(tmp_path)
    done = subprocess.run(
        daemon_args(s, 300, 300),
        cwd=s.cwd,
        env=s.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert str(s.inventory) in done.stderr
    assert "open files; this process may open 300" in done.stderr
    assert "nothing was sent" in done.stderr
    assert not (s.state / "daemon.json").exists()
    assert not (s.state / "cordon.sock").exists()
