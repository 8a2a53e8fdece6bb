"""The worker threads the flow checks run their sources on, kept from one check to the next
(#18: a verify step started a thread per source each round, and the device source as many again
per check; on the loaded 2-core machine a thread's start took tens of milliseconds, so the last
source of a round (the twin's prober) started ~0.3 s after the first and the round lasted that
much longer). A task waits only for devices and probes, never for another task of the same
pool, so a pool that is busy queues work without deadlock.

Imports the standard library only."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}


def workers(name: str, size: int) -> ThreadPoolExecutor:
    """The process's pool `name` (made with `size` threads at its first use; a thread is
    started only when no idle one is free)."""
    with _LOCK:
        found = _POOLS.get(name)
        if found is None:
            found = _POOLS[name] = ThreadPoolExecutor(size, thread_name_prefix=name)
        return found
