"""SNMP drivers sharing pysnmp engines, against real snmpd agents of the twin: two agents with the
SAME SNMPv3 user name but different passphrases (a second snmpd in rns-sw1's namespace, on port
1161, started and stopped by the test) are read in parallel from many threads without their keys
ever mixing; wrong keys under that user name fail alone; closing drivers leaves the others
working."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent.drivers import Target
from agent.errors import AuthError
from agent.lab import daemons
from agent.platforms.snmp.driver import SnmpDriver
from agent.platforms.snmp.mib import SYS_UPTIME
from tests.drivers import twinhelp as th
from tests.drivers.keys import write_secret
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin

DEVICE = "rns-sw1"
OTHER_PORT = 1161


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cordon-snmp-") as d:
        os.chmod(d, 0o700)
        yield Path(d)


def with_secrets(real: Target, base: Path, tag: str, port: int | None = None) -> Target:
    """`real` with its SNMP passphrases read from `base` (written here, `tag` in each)."""
    for name in ("auth", "priv"):
        write_secret(base / ".secrets" / "snmp" / name, f"{tag}-{name}-passphrase")
    assert real.device.snmp is not None
    snmp = real.device.snmp.model_copy(
        update={
            "auth": "file:.secrets/snmp/auth",
            "priv": "file:.secrets/snmp/priv",
            **({"port": port} if port else {}),
        }
    )
    device = real.device.model_copy(update={"snmp": snmp})
    return dataclasses.replace(real, device=device, base_dir=base)


@pytest.fixture
def twin_agents(lab: Lab, scratch: Path) -> Iterator[tuple[Target, Target]]:
    """rns-sw1's own agent, and a second snmpd beside it: same user name, other passphrases."""
    real = th.target(lab, DEVICE)
    assert real.device.snmp is not None and real.device.snmp.user
    other = with_secrets(real, scratch / "other", "other-agent", OTHER_PORT)
    proc = daemons.start_snmpd(
        lab.bp.device_ns[DEVICE],
        scratch / "snmpd",
        DEVICE,
        real.address,
        user=real.device.snmp.user,
        auth_pass="other-agent-auth-passphrase",
        priv_pass="other-agent-priv-passphrase",
        port=OTHER_PORT,
    )
    try:
        yield real, other
    finally:
        daemons.stop(proc)


def test_same_user_different_keys_never_mix(twin_agents: tuple[Target, Target]) -> None:
    """Many drivers of either agent, read in parallel from 8 threads: every read succeeds."""
    real, other = twin_agents
    drivers = [SnmpDriver(t) for t in (real, other) * 6]

    def reads(d: SnmpDriver) -> int:
        d.connect()
        for _ in range(10):
            assert isinstance(d.get([SYS_UPTIME])[SYS_UPTIME], int)
        return 10

    try:
        with ThreadPoolExecutor(max_workers=8) as ex:
            assert sum(ex.map(reads, drivers * 2)) == 20 * len(drivers)
        real_slot = drivers[0]._slot
        other_slot = drivers[1]._slot
        assert real_slot is not None and other_slot is not None
        assert real_slot is not other_slot  # same user name, other keys: other engine
        assert all(d._slot is real_slot for d in drivers[0::2])
        assert all(d._slot is other_slot for d in drivers[1::2])
    finally:
        for d in drivers:
            d.close()


def test_wrong_keys_fail_alone_and_close_leaves_others(lab: Lab, scratch: Path) -> None:
    """A driver with wrong passphrases for the real user is refused, between reads of drivers
    with the right ones, which keep working; closing some drivers leaves the rest working."""
    real = th.target(lab, DEVICE)
    good = [SnmpDriver(real) for _ in range(3)]
    bad = SnmpDriver(with_secrets(real, scratch, "wrong"))
    try:
        for d in good:
            d.connect()
        for _ in range(3):
            with pytest.raises(AuthError, match="WrongDigest"):
                bad.connect()
            for d in good:
                d.ping()
        good[0].close()
        good[1].close()
        good[2].ping()
        assert isinstance(good[2].get([SYS_UPTIME])[SYS_UPTIME], int)
        good[0].connect()  # reopens on the engine still in use
        good[0].ping()
    finally:
        for d in [*good, bad]:
            d.close()
