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
