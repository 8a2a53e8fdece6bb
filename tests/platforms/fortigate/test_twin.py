"""The fortigate platform on its twin (tests/platforms/fortigate/data/fortigate-small.yaml: a
clinic behind a FortiGate whose emulated REST API turns its policies into the namespace's own
nftables), with real TCP: a zone block stops a flow while the must-survive flow keeps working
(the server side cannot open a connection back), the read-back is exact, a second run sends
nothing, the rollback restores the baseline; FortiOS's revert mode really reverts an unconfirmed
change and keeps a confirmed one; a wrong certificate pin or a wrong token sends nothing."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.base import ChangeSet, Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import AuthError, CertificateError
from agent.inventory import load
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.network.state import NORMAL, DeviceState, NftRule
from agent.platforms.fortigate import render
from agent.platforms.fortigate.driver import FortiGateDriver
from agent.playbook import load as load_playbook
from agent.run.executor import Executor
from tests.conftest import ROOT, SECRETS, Twin, _collect_secrets
from tests.lab.twinops import wait_for

pytestmark = [pytest.mark.twin, pytest.mark.twin_lifecycle]

INV = Path(__file__).parent / "data" / "fortigate-small.yaml"
SITE = "fg-clinique"


@pytest.fixture(scope="module")
def fg(twin_lock: None) -> Iterator[Twin]:
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail("a twin is already up on this machine: `cordon lab down` first")
    inv = load(INV)
    state = build.up(inv)
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, state.lab), state=state, secrets=secrets)
    finally:
        build.down()


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


def driver(twin: Twin) -> FortiGateDriver:
    return FortiGateDriver(Target.of(twin.inv, "fg-fw"))


def api_log(twin: Twin) -> str:
    return (twin.state.dir / "fg-fw" / "fortios-api.out").read_text(errors="replace")


def test_block_keeps_must_survive_and_rolls_back(fg: Twin, tmp_path: Path) -> None:
    original = matrix(fg)
    assert original == {"scope-hl7": True, "srv-scope-web": True, "pc-ehr": True}
    journal = Journal(tmp_path / "journal.sqlite")
    with Pool(fg.inv, keepalive=None) as pool:
        ex = Executor(fg.inv, journal, pool, actor="test")
        pb = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", fg.inv, {})
        report = ex.run(pb, [SITE])
        assert report.status == "done", report
        # the monitor reaches the HL7 server (replies by the session table); the server cannot
        # open a connection to the monitor; the WAN is cut
        assert wait_for(
            lambda: matrix(fg) == {"scope-hl7": True, "srv-scope-web": False, "pc-ehr": False},
            timeout=10,
        )
        recorded = journal.device_states()["fg-fw"]
        d = driver(fg)
        try:
            assert set(d.rule_comments() or ()) == render.comments(recorded)
        finally:
            d.close()
        again = ex.run(pb, [SITE])
        assert again.status == "done" and again.outcomes == []
        assert ex.rollback(report.run_id).status == "rolled_back"
        assert wait_for(lambda: matrix(fg) == original, timeout=10)
        d = driver(fg)
        try:
            assert d.rule_comments() is None  # no cordon- object left; the site policy works
        finally:
            d.close()
    journal.close()


def _block(twin: Twin) -> DeviceState:
    return DeviceState(
        rules=frozenset(
            {NftRule("drop", iif="wan1", tag="test"), NftRule("drop", oif="wan1", tag="test")}
        )
    )


def test_revert_mode_reverts_an_unconfirmed_change(fg: Twin) -> None:
    d = driver(fg)
    try:
        d.arm_revert(ChangeSet(tuple(render.script(NORMAL).splitlines())), 10)
        d.apply(ChangeSet(tuple(render.script(_block(fg)).splitlines())))
        assert wait_for(lambda: not matrix(fg)["pc-ehr"], timeout=5)
    finally:
        d.close()  # the agent is gone: nobody confirms
    fresh = driver(fg)
    try:
        assert wait_for(lambda: fresh.rule_comments() is None, timeout=30)
        assert matrix(fg)["pc-ehr"]
        assert "Configuration reverted due to timeout" in api_log(fg)
    finally:
        fresh.close()


def test_revert_mode_keeps_a_confirmed_change(fg: Twin) -> None:
    d = driver(fg)
    try:
        token = d.arm_revert(ChangeSet(tuple(render.script(NORMAL).splitlines())), 10)
        d.apply(ChangeSet(tuple(render.script(_block(fg)).splitlines())))
        assert d.confirm(token)
        time.sleep(12)  # past the revert timeout: nothing may revert now
        assert set(d.rule_comments() or ()) == render.comments(_block(fg))
        assert not matrix(fg)["pc-ehr"]
        d.apply(ChangeSet(tuple(render.script(NORMAL).splitlines())))
        assert d.rule_comments() is None
        assert wait_for(lambda: matrix(fg)["pc-ehr"], timeout=5)
    finally:
        d.close()


def test_wrong_pin_sends_nothing(fg: Twin, tmp_path: Path) -> None:
    pins = tmp_path / "pins"
    pins.write_text("fg-fw sha256:" + "0" * 64 + "\n")
    target = dataclasses.replace(Target.of(fg.inv, "fg-fw"), tls_pins=pins)
    before = api_log(fg)
    d = FortiGateDriver(target)
    with pytest.raises(CertificateError):
        d.ping()
    assert api_log(fg) == before


def test_wrong_token_is_an_auth_error(fg: Twin, tmp_path: Path) -> None:
    bad = tmp_path / "token"
    bad.write_text("not-the-token-at-all")
    bad.chmod(0o600)
    real = Target.of(fg.inv, "fg-fw")
    assert real.device.https is not None
    https = real.device.https.model_copy(update={"token": f"file:{bad}"})
    device = real.device.model_copy(update={"https": https})
    d = FortiGateDriver(dataclasses.replace(real, device=device))
    with pytest.raises(AuthError) as err:
        d.ping()
    assert "401" in str(err.value) and "not-the-token" not in str(err.value)
    d.close()
