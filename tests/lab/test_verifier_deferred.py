"""The deferred twin source (`--local`, #18) makes the twin's source once, at its first check,
even when sites check their flows in parallel, and answers with that source's evidence."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agent.lab import verifier
from agent.verify.evidence import Evidence, Seen


class _Source:
    name = "twin"

    def check(self, site: str, flows: Sequence[Any], expected: Mapping[str, bool]) -> list[Any]:
        return [Evidence(name, "twin", Seen.OPEN, site) for name in expected]


def test_the_twin_source_is_made_once_at_the_first_check(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, str]] = []
    gate = threading.Event()

    def make(inv: Any, lab: str) -> _Source:
        gate.wait(5)  # every thread is in `check` before the first source is made
        made.append((inv, lab))
        return _Source()

    monkeypatch.setattr(verifier, "_make", make)
    twin = verifier.DeferredTwin(inv="INV", lab="cdn")  # type: ignore[arg-type]
    assert not twin.made and made == []
    out: list[list[Evidence]] = []
    threads = [
        threading.Thread(target=lambda i=i: out.append(twin.check(f"s{i}", [], {f"f{i}": True})))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert made == [("INV", "cdn")]
    assert twin.made
    assert sorted(e.flow for answer in out for e in answer) == ["f0", "f1", "f2", "f3"]


def test_the_deferred_source_stops_early_like_the_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deferred source is a `StopsEarly` source, as the twin's is: a round that already has
    a flow failed by another source gives its `failed` board to the twin's prober through it
    (without it, a `--local` run's prober waited its full silent-drop timeout for that flow)."""
    from agent.lab.flows import TwinSource  # noqa: PLC0415
    from agent.verify.evidence import StopsEarly  # noqa: PLC0415

    given: list[Any] = []

    class _Early(_Source):
        def check_until(
            self, site: str, flows: Sequence[Any], expected: Mapping[str, bool], failed: Any
        ) -> list[Any]:
            given.append(failed)
            return [Evidence(name, "twin", Seen.UNKNOWN, "given up") for name in expected]

    assert issubclass(TwinSource, StopsEarly)  # what the deferred one stands for
    monkeypatch.setattr(verifier, "_make", lambda inv, lab: _Early())
    twin = verifier.DeferredTwin(inv="INV", lab="cdn")  # type: ignore[arg-type]
    assert isinstance(twin, StopsEarly)
    board = object()
    out = twin.check_until("s", [], {"f": True}, board)  # type: ignore[arg-type]
    assert given == [board] and [e.seen for e in out] == [Seen.UNKNOWN]
