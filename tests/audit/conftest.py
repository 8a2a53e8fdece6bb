"""Fixtures for the audit trail tests: a fake clock, a chain writer, a multi-day log, a pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent.audit as audit
from agent.audit.chain import ChainWriter
from agent.audit.seals import seal_head
from agent.audit.verify import Verification, verify

# The writer's seal key in these tests; its public half is what the verifier pins.
SEAL_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = SEAL_KEY.public_key()


@dataclass
class FakeClock:
    """Returns `now`, then moves it forward by `step` at every call."""

    now: datetime
    step: timedelta = timedelta(seconds=1)

    def __call__(self) -> datetime:
        current = self.now
        self.now += self.step
        return current


START = datetime(2024, 10, 15, 3, 12, tzinfo=UTC)


def write_log(
    log_dir: Path,
    count: int,
    *,
    start: datetime = START,
    step: timedelta = timedelta(seconds=1),
    seal: bool = True,
    signer: Ed25519PrivateKey | None = None,
) -> ChainWriter:
    """Append `count` device.change records stamped `step` apart, then seal the head."""
    writer = ChainWriter(log_dir, clock=FakeClock(start, step))
    for n in range(1, count + 1):
        writer.append({"event": "device.change", "device": f"sw{n}", "outcome": "ok", "n": n})
    if seal:
        seal_head(writer, reason="test", signer=signer)
    return writer


def verify_sealed(log_dir: Path) -> Verification:
    """Seal the head as `cordon audit seal` would, then verify (for logs written without seals)."""
    writer = ChainWriter(log_dir)
    seal_head(writer, reason="test")
    writer.close()
    return verify(log_dir)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def pipeline(log_dir: Path) -> Iterator[Path]:
    """The process-wide pipeline pointed at a fresh directory, quiet, closed afterwards."""
    audit.configure(log_dir, console=False, seal_interval=0)
    yield log_dir
    audit.close()
