"""Fixtures of the drivers' tests: a view of the session twin that never prints its secrets (a
failing test shows its arguments, and the twin's secrets must not reach any report), and more than
1,024 descriptors held open (`many_fds`)."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

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


HIGH_FD = 1100  # past select()'s FD_SETSIZE (1,024)


@pytest.fixture
def many_fds() -> Iterator[int]:
    """More than 1,024 descriptors held open for the test (/dev/null), so every socket and pipe
    it makes is numbered above 1,024, as in a process holding ~500 warm sessions. Yields the
    highest descriptor number held (the count held is smaller when the process already has
    descriptors open, as in the full suite)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = HIGH_FD + 512
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the open-file hard limit ({hard}) is below {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < HIGH_FD:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield held[-1]
    finally:
        for fd in held:
            os.close(fd)
