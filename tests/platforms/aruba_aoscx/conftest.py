"""The aruba_aoscx twin: a one-switch group (data/aoscx-lab.yaml) built under the machine-wide lab
lock, its switch's minute scaled to 3 s (`CORDON_LAB_AOSCX_MINUTE_S`, read by the lab only)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.inventory import load
from agent.lab import build
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from tests.conftest import SECRETS, Twin, _collect_secrets

DATA = Path(__file__).parent / "data"
INVENTORY = DATA / "aoscx-lab.yaml"
MINUTE_S = 3.0


@pytest.fixture(scope="module")
def aoscx(twin_lock: None) -> Iterator[Twin]:
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail("a twin is already up on this machine: `cordon lab down` first")
    os.environ["CORDON_LAB_AOSCX_MINUTE_S"] = str(MINUTE_S)
    inv = load(INVENTORY)
    try:
        state = build.up(inv)
    finally:
        del os.environ["CORDON_LAB_AOSCX_MINUTE_S"]
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, state.lab), state=state, secrets=secrets)
    finally:
        build.down()
