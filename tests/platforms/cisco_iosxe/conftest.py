"""The cisco_iosxe twin: the small two-site group of `data/iosxe-pair.yaml` (two IOS-XE L3
switches), built under the machine-wide lab lock with a twin minute of 3 s (the twin's documented
test scale, CORDON_TWIN_IOSXE_MINUTE_S), taken down after the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Twin, own_twin

PAIR = Path(__file__).parent / "data" / "iosxe-pair.yaml"
LAB = "ixe"
MINUTE_S = 3.0


@pytest.fixture(scope="module")
def pair(twin_lock: None) -> Iterator[Twin]:
    with own_twin(PAIR, lab=LAB, env={"CORDON_TWIN_IOSXE_MINUTE_S": str(MINUTE_S)}) as built:
        yield built
