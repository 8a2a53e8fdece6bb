"""The juniper_junos twin tests' own twin: the small group of data/junos-site.yaml (one site
routed by a Junos EX, an access switch, the internet), built under the machine-wide twin lock
with a confirm minute shortened to MINUTE_S seconds, and taken down after the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.inventory import load
from agent.lab import build, flows
from agent.lab.state import LabState
from agent.lab.topology import blueprint
from agent.platforms.juniper_junos import twin as junos_twin
from tests.conftest import SECRETS, Twin, _collect_secrets

DATA = Path(__file__).with_name("data") / "junos-site.yaml"
MINUTE_S = 3.0  # a `commit confirmed 1` lasts 3 s on this twin


@pytest.fixture(scope="module")
def junos(twin_lock: None) -> Iterator[Twin]:
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail("a twin is already up on this machine: `cordon lab down` first")
    inv = load(DATA)
    junos_twin.time_scale(MINUTE_S)
    try:
        state = build.up(inv)
    finally:
        junos_twin.time_scale(60.0)
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, state.lab), state=state, secrets=secrets)
    finally:
        build.down()


def matrix(twin: Twin) -> dict[str, bool]:
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=1.5)}


SRX_DATA = Path(__file__).with_name("data") / "srx-site.yaml"


@pytest.fixture(scope="module")
def srx(twin_lock: None) -> Iterator[Twin]:
    """The SRX group of data/srx-site.yaml, its confirm minute MINUTE_S seconds."""
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail("a twin is already up on this machine: `cordon lab down` first")
    inv = load(SRX_DATA)
    junos_twin.time_scale(MINUTE_S)
    try:
        state = build.up(inv)
    finally:
        junos_twin.time_scale(60.0)
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, state.lab), state=state, secrets=secrets)
    finally:
        build.down()
