"""The dead-man timer fails closed on a real firewall: a reopening change armed with a revert
and never confirmed re-isolates the device by itself; a confirmed one stays open; `lab down`
would leave no armed timer behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.drivers import ChangeSet
from agent.drivers.base import Driver, Target
from agent.lab import flows
from agent.network.state import DeviceState, NftRule
from agent.platforms.capabilities import DeadMan
from agent.platforms.linux_nftables.render import nft_table
from agent.platforms.linux_nftables.revert import DEADMAN_DIR
from agent.platforms.registry import one_shot
from tests.conftest import Twin
from tests.lab.twinops import wait_for

pytestmark = pytest.mark.twin

FW = "bz3-fw1"  # a Linux firewall of the example: the dead-man under test is nftables'
FLOW = "bz3-admin-internet"
CUT = ChangeSet(
    tuple(
        nft_table(
            DeviceState(
                rules=frozenset(
                    {
                        NftRule("drop", iif="inet0", tag="test cut"),
                        NftRule("drop", oif="inet0", tag="test cut"),
                    }
                )
            )
        ).splitlines()
    ),
    action="test.cut",
)
REOPEN = ChangeSet(tuple(nft_table(DeviceState()).splitlines()), action="test.reopen")


def deadman(drv: Driver) -> DeadMan:
    assert isinstance(drv, DeadMan)  # nftables firewalls can arm an on-device revert
    return drv


def is_open(twin: Twin) -> bool:
    flow = twin.inv.flow(FLOW)
    assert flow is not None
    (obs,) = flows.observe(twin.inv, twin.bp, flows=[flow], timeout=1.0)
    return obs.observed_open


def test_unconfirmed_reopen_reisolates_itself(twin: Twin) -> None:
    """Reopen with a 3 s dead-man, never confirm: the firewall cuts the internet again alone."""
    target = Target.of(twin.inv, FW)
    try:
        with one_shot(target) as drv:
            drv.apply(CUT)
            token = deadman(drv).arm_revert(CUT, 3)
            drv.apply(REOPEN)
        assert is_open(twin)  # reopened, for now
        assert wait_for(lambda: not is_open(twin), timeout=10)  # the device re-isolated itself
        with one_shot(target) as drv:
            assert deadman(drv).confirm(token) is False  # too late: it fired
    finally:
        with one_shot(target) as drv:
            drv.apply(REOPEN)
    assert wait_for(lambda: is_open(twin), timeout=5)
    assert not list(Path(DEADMAN_DIR).glob(f"cordon-deadman-{token}*"))


def test_confirmed_reopen_stays_open(twin: Twin) -> None:
    """Reopen with a 2 s dead-man and confirm in time: it stays open after the deadline."""
    target = Target.of(twin.inv, FW)
    try:
        with one_shot(target) as drv:
            drv.apply(CUT)
            token = deadman(drv).arm_revert(CUT, 2)
            drv.apply(REOPEN)
            assert deadman(drv).confirm(token) is True
        time.sleep(3)
        assert is_open(twin)
    finally:
        with one_shot(target) as drv:
            drv.apply(REOPEN)
