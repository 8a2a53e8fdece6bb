"""The aruba_aoscx twin: a one-switch group (data/aoscx-lab.yaml) built under the machine-wide lab
lock, its switch's minute scaled to 3 s (`CORDON_LAB_AOSCX_MINUTE_S`, read by the lab only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Twin, own_twin

DATA = Path(__file__).parent / "data"
INVENTORY = DATA / "aoscx-lab.yaml"
MINUTE_S = 3.0


@pytest.fixture(scope="module")
def aoscx(twin_lock: None) -> Iterator[Twin]:
    with own_twin(INVENTORY, env={"CORDON_LAB_AOSCX_MINUTE_S": str(MINUTE_S)}) as built:
        yield built
