"""The cisco_iosxe twin: the small two-site group of `data/iosxe-pair.yaml` (two IOS-XE L3
switches), built under the machine-wide lab lock with a twin minute of 3 s (the twin's documented
test scale, CORDON_TWIN_IOSXE_MINUTE_S), taken down after the module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.inventory import load
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from tests.conftest import SECRETS, Twin, _collect_secrets

PAIR = Path(__file__).parent / "data" / "iosxe-pair.yaml"
LAB = "ixe"
MINUTE_S = 3.0


@pytest.fixture(scope="module")
def pair(twin_lock: None) -> Iterator[Twin]:
    if LabState.load(LAB) is not None:
        pytest.fail(f"a twin {LAB} is already up: `cordon lab down` it first")
    old = os.environ.get("CORDON_TWIN_IOSXE_MINUTE_S")
    os.environ["CORDON_TWIN_IOSXE_MINUTE_S"] = str(MINUTE_S)
    inv = load(PAIR)
    try:
        state = build.up(inv, lab=LAB)
    finally:
        if old is None:
            os.environ.pop("CORDON_TWIN_IOSXE_MINUTE_S", None)
        else:
            os.environ["CORDON_TWIN_IOSXE_MINUTE_S"] = old
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, LAB), state=state, secrets=secrets)
    finally:
        build.down(LAB)


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}
