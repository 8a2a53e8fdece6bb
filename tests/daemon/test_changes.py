"""The long-poll's wait primitive (`agent.service.changes`): a waiter wakes on a change made by
another thread, not at its timeout; a run's version is its answer's digest."""

from __future__ import annotations

import threading

from agent.service.changes import Changes, version


def test_a_waiter_wakes_on_a_change_from_another_thread() -> None:
    """`wait` returns the new count once another thread notifies (the 60 s timeout would
    return the count seen)."""
    changes = Changes()
    seen = changes.count()
    waiting = threading.Event()

    def change() -> None:
        waiting.wait()
        changes.notify()

    other = threading.Thread(target=change)
    other.start()
    waiting.set()
    assert changes.wait(seen, timeout=60) == seen + 1
    other.join()


def test_wait_returns_at_once_when_the_count_already_moved() -> None:
    """A change made between reading the count and waiting is not missed."""
    changes = Changes()
    seen = changes.count()
    changes.notify()
    assert changes.wait(seen, timeout=60) == seen + 1


def test_version_is_the_answer_digest() -> None:
    """Equal answers have one version, whatever the key order; any difference changes it."""
    a = {"run_id": "R1", "status": "running", "steps": [{"seq": 1, "status": "pending"}]}
    b = {"steps": [{"status": "pending", "seq": 1}], "status": "running", "run_id": "R1"}
    assert version(a) == version(b)
    assert len(version(a)) == 16
    assert version(a) != version({**a, "status": "done"})
