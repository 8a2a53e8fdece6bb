"""Fixtures of the drivers' tests: a view of the session twin that never prints its secrets (a
failing test shows its arguments, and the twin's secrets must not reach any report)."""

from __future__ import annotations

import pytest

from tests.conftest import Twin
from tests.drivers.twinhelp import Lab


class Secrets(tuple[str, ...]):
    """The twin's secret values, for asserting they appear nowhere; shown as a count only."""

    def __repr__(self) -> str:
        return f"<{len(self)} twin secrets>"


@pytest.fixture
def lab(twin: Twin) -> Lab:
    """The session twin: inventory, blueprint, state (no secret values in its repr)."""
    return Lab(twin.inv, twin.bp, twin.state)


@pytest.fixture
def twin_secrets(twin: Twin) -> Secrets:
    return Secrets(twin.secrets)
