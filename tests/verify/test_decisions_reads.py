"""The device source's merged reads (`decisions.Reads`), without devices: concurrent checks of one
device share a read only when it started after they asked (a read already running is never the
answer of a check that asked meanwhile), the shared read asks every packet any of them asked,
each check gets its own decisions in its order, and a failed read fails every check it served."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from agent.drivers.base import InterfaceState
from agent.errors import DeviceError
from agent.platforms.capabilities import FlowDecision, FlowQuery, Verdict
from agent.verify.decisions import DeviceAnswer, Reads


def query(port: int) -> FlowQuery:
    return FlowQuery("lan0", "wan0", "198.18.1.1", "198.18.2.1", None, port)


class Device:
    """A device whose reads block until released; each answer names its read (its interface)
    and decides each packet by its port (odd: drop), so a wrong mapping shows."""

    def __init__(self) -> None:
        self.asked: list[list[FlowQuery]] = []
        self.release: list[threading.Event] = []
        self.fail = False

    def read(self, queries: Sequence[FlowQuery]) -> DeviceAnswer:
        n = len(self.asked)
        self.asked.append(list(queries))
        gate = threading.Event()
        self.release.append(gate)
        gate.wait(30)
        if self.fail:
            raise DeviceError("fw1", "decide", "connection lost")
        verdicts = [
            FlowDecision(Verdict.DROP if (q.dport or 0) % 2 else Verdict.ACCEPT, f"read {n}")
            for q in queries
        ]
        return DeviceAnswer({f"read{n}": InterfaceState(f"read{n}", admin_up=True)}, verdicts)


def until(cond: object, what: str) -> None:
    """Wait (not a timed assertion: a bound for a broken test) until `cond()` holds."""
    end = time.monotonic() + 30
    while not cond():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


def asking(
    reads: Reads, queries: Sequence[FlowQuery], out: dict[str, object], key: str
) -> threading.Thread:
    def run() -> None:
        try:
            out[key] = reads.ask(queries)
        except DeviceError as exc:
            out[key] = exc

    t = threading.Thread(target=run)
    t.start()
    return t


def waiting(reads: Reads) -> int:
    """How many packets the read not started yet gathers."""
    batch = reads._open  # the test's only way to know the checks have joined
    return 0 if batch is None else len(batch.queries)


def test_checks_that_ask_during_a_read_share_the_next_one_never_the_running_one() -> None:
    dev = Device()
    reads = Reads(dev.read)
    out: dict[str, object] = {}
    first = asking(reads, [query(80)], out, "a")
    until(lambda: len(dev.asked) == 1, "the first read started")
    second = asking(reads, [query(444), query(81)], out, "b")
    third = asking(reads, [query(81), query(22)], out, "c")
    until(lambda: waiting(reads) == 3, "both checks joined the next read")
    dev.release[0].set()
    first.join()
    until(lambda: len(dev.asked) == 2, "the next read started")
    dev.release[1].set()
    second.join()
    third.join()
    # one read for the two checks that asked meanwhile, every packet asked once
    assert reads.reads == 2
    assert dev.asked == [[query(80)], [query(444), query(81), query(22)]]
    a, b, c = out["a"], out["b"], out["c"]
    assert isinstance(a, DeviceAnswer) and isinstance(b, DeviceAnswer)
    assert isinstance(c, DeviceAnswer)
    assert list(a.interfaces) == ["read0"]
    # the checks that asked while read 0 ran got read 1, each its own packets in its order
    assert list(b.interfaces) == list(c.interfaces) == ["read1"]
    assert [d.verdict for d in b.decisions or []] == [Verdict.ACCEPT, Verdict.DROP]
    assert [d.verdict for d in c.decisions or []] == [Verdict.DROP, Verdict.ACCEPT]


def test_a_failed_read_fails_every_check_it_served_and_the_next_read_is_made() -> None:
    dev = Device()
    reads = Reads(dev.read)
    out: dict[str, object] = {}
    dev.fail = True
    first = asking(reads, [query(80)], out, "a")
    until(lambda: len(dev.asked) == 1, "the first read started")
    dev.release[0].set()
    first.join()
    assert isinstance(out["a"], DeviceError)
    dev.fail = False
    later = asking(reads, [query(80)], out, "b")
    until(lambda: len(dev.asked) == 2, "a new read for the later check")
    dev.release[1].set()
    later.join()
    got = out["b"]
    assert isinstance(got, DeviceAnswer) and list(got.interfaces) == ["read1"]


@pytest.mark.parametrize("n", [1, 4])
def test_alone_a_check_reads_at_once(n: int) -> None:
    dev = Device()
    reads = Reads(dev.read)
    out: dict[str, object] = {}
    for i in range(n):
        t = asking(reads, [query(80 + i)], out, str(i))
        until(lambda i=i: len(dev.asked) == i + 1, "the read started")
        dev.release[i].set()
        t.join()
    assert reads.reads == n
