"""The juniper_junos twin tests' own twin: the small group of data/junos-site.yaml (one site
routed by a Junos EX, an access switch, the internet), built under the machine-wide twin lock
with a confirm minute shortened to MINUTE_S seconds, and taken down after the module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platforms.juniper_junos import twin as junos_twin
from tests.conftest import Twin, matrix, own_twin

__all__ = ["DATA", "MINUTE_S", "SRX_DATA", "junos", "matrix", "srx"]

DATA = Path(__file__).with_name("data") / "junos-site.yaml"
SRX_DATA = Path(__file__).with_name("data") / "srx-site.yaml"
MINUTE_S = 3.0  # a `commit confirmed 1` lasts 3 s on this twin


@contextlib.contextmanager
def _short_minute() -> Iterator[None]:
    junos_twin.time_scale(MINUTE_S)
    try:
        yield
    finally:
        junos_twin.time_scale(60.0)


@pytest.fixture(scope="module")
def junos(twin_lock: None) -> Iterator[Twin]:
    with own_twin(DATA, during_build=_short_minute) as built:
        yield built


@pytest.fixture(scope="module")
def srx(twin_lock: None) -> Iterator[Twin]:
    """The SRX group of data/srx-site.yaml, its confirm minute MINUTE_S seconds."""
    with own_twin(SRX_DATA, during_build=_short_minute) as built:
        yield built
