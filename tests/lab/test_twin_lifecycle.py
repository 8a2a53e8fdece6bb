"""`lab up` builds a twin whose secrets are private and whose daemons answer; `lab down` leaves
nothing behind: no namespace, no process (an infected host's scanner included), no file, no
root-namespace link or rule it made."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import yaml

from agent.drivers import ChangeSet
from agent.drivers.base import Target
from agent.errors import LabError
from agent.inventory import load
from agent.lab import build, daemons, infect, netns, ready
from agent.lab.state import LabState, state_root
from agent.lab.topology import ROOT_LINK
from agent.platforms.capabilities import DeadMan
from agent.platforms.registry import one_shot
from scripts.synth import HGO_SITES, group_document

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]


def small_inventory(tmp_path: Path) -> Path:
    doc = group_document("mini", "Mini group", HGO_SITES[:1], zone_prefix=24, inter_site_flows=[])
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def timers() -> list[int]:
    """PIDs of dead-man timers (recognised by their command line)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"cordon-deadman-" in (proc / "cmdline").read_bytes():
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def blackhole_present() -> bool:
    return "198.18.0.0/15" in netns.run(["ip", "route", "show", "type", "blackhole"]).stdout


def test_up_then_down_leaves_nothing(twin_lock: None, tmp_path: Path) -> None:
    """A full up/down cycle of a one-site twin removes everything the twin made, and only that."""
    inv = load(small_inventory(tmp_path))
    blackhole_before = blackhole_present()
    state_root_before = state_root().exists()
    foreign = set(netns.run(["ip", "netns", "list"]).stdout.split())
    state = build.up(inv)
    try:
        # returned only once the kernel has settled: every link oper-UP, every port forwarding
        assert {ns: ready.link_problems(ns) for ns in state.namespaces} == {
            ns: [] for ns in state.namespaces
        }
        assert blackhole_present()
        assert all(netns.exists(ns) for ns in state.namespaces)
        procs = [daemons.DaemonProc.from_dict(p) for p in state.procs]
        assert procs
        assert all(daemons.is_running(p) for p in procs)
        secret_files = [Path(f) for f in state.files if not f.endswith(".pub")]
        assert secret_files
        for f in secret_files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        # every device's sshd answers on its management address, through the twin's veth
        devices = [d for _, d in inv.devices()]
        assert len(devices) == 5  # core fw + sw, La Sagesse fw + 2 switches
        for d in devices:
            route = netns.run(["ip", "route", "get", str(d.management.address)]).stdout
            assert f"dev {ROOT_LINK}" in route  # never any other way out of the root namespace
            with socket.create_connection((str(d.management.address), d.ssh.port), timeout=5) as s:
                assert s.recv(64).startswith(b"SSH-2.0-")
        with pytest.raises(LabError, match="already up"):
            build.up(inv)
        # an agent's dead-man timer armed on a twin firewall outlives its SSH session
        with one_shot(Target.of(inv, "rns-fw1")) as drv:
            assert isinstance(drv, DeadMan)
            drv.arm_revert(ChangeSet(("table inet cordon {}", "delete table inet cordon")), 60)
        assert timers()
        # an infected host scans the core until `lab down` stops it by its recorded PID; a
        # second one whose starter died before journaling it is stopped all the same
        recorded = infect.infect("rennes-la-sagesse/admin/pc-admin-1", rate=5)
        unrecorded = infect.infect("rennes-la-sagesse/guest/guest-1", rate=5)
        journal = LabState.load(state.lab)
        assert journal is not None
        scanners = [
            daemons.DaemonProc.from_dict(p) for p in journal.procs if p["kind"] == infect.KIND
        ]
        assert sorted(p.pid for p in scanners) == sorted([recorded, unrecorded])
        assert all(daemons.is_running(p) for p in scanners)
        journal.procs = [p for p in journal.procs if p["pid"] != unrecorded]
        del journal.extra["infected"]["rennes-la-sagesse/guest/guest-1"]
        journal.save()
        assert [i.pid for i in infect.infected()] == [recorded]
    finally:
        done = build.down()
    assert any("namespaces" in d for d in done)
    assert not any(netns.exists(ns) for ns in state.namespaces)
    assert not any(daemons.is_running(p) for p in procs)
    assert not any(daemons.is_running(p) for p in scanners)
    assert infect.infected() == []
    assert not any(Path(f).exists() for f in state.files)
    assert not state.dir.exists()
    assert state_root().exists() == state_root_before
    assert not any(Path(d).exists() for d in state.dirs)
    frr_dirs = state.extra.get("frr_dirs", [])
    assert len(frr_dirs) == 3  # one FRR instance per switch of the one-site twin
    assert not any(Path(d).exists() for d in frr_dirs)
    assert netns.run(["ip", "link", "show", ROOT_LINK], check=False).returncode != 0
    tables = netns.run(["nft", "list", "tables"]).stdout
    assert build.GUARD_TABLE not in tables
    assert blackhole_present() == blackhole_before
    assert set(netns.run(["ip", "netns", "list"]).stdout.split()) == foreign
    assert not (tmp_path / ".secrets").exists()
    assert timers() == []  # the armed timer was stopped with the twin
    assert not build.DEADMAN_FILES.exists()
    assert os.listdir(tmp_path) == ["mini.yaml"]
