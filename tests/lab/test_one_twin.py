"""One twin per machine, whatever its lab name: a twin of another name asked for while one is up
is refused before anything is touched. Before this was checked, the second build failed half-way
(`RTNETLINK answers: File exists` on the shared management veth) and undoing it deleted the
running twin's management link and its root-namespace guard table: every later test of the
session found its devices unreachable."""

from __future__ import annotations

import pytest

from agent.errors import LabError
from agent.lab import build, netns
from agent.lab.state import LabState
from agent.lab.topology import ROOT_LINK, ns_name
from tests.conftest import Twin

pytestmark = pytest.mark.twin


def root_guard() -> str:
    done = netns.run(["nft", "list", "table", "inet", build.GUARD_TABLE], check=False)
    return done.stdout if done.returncode == 0 else ""


def test_a_twin_of_another_name_is_refused_and_the_running_one_untouched(twin: Twin) -> None:
    before = build.status()
    guard = root_guard()
    assert guard and ROOT_LINK in guard
    with pytest.raises(LabError, match="already up") as refused:
        build.up(twin.inv, lab="other")
    assert "one twin at a time" in str(refused.value)
    assert LabState.load("other") is None
    assert not netns.exists(ns_name("other", "oob"))
    # the running twin keeps its management link, its guard and its daemons
    assert netns.run(["ip", "link", "show", ROOT_LINK], check=False).returncode == 0
    assert root_guard() == guard
    mgmt = next(d for _, d in twin.inv.devices() if d.name == "rns-fw1").management.address
    assert f"dev {ROOT_LINK}" in netns.run(["ip", "route", "get", str(mgmt)]).stdout
    after = build.status()
    assert after == before
    assert after["up"] is True
    assert after["processes_dead"] == []
