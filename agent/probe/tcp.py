"""Opens the TCP flows of an order, from the probe's own address in the flow's source zone:
bind to that address, connect with a timeout, close at once (no byte sent). Each attempt says
what the network answered (connected, refused, timed out, unreachable) and how long it took, or
that the probe itself could not try (error: proves nothing either way). Attempts run in parallel
(a handful of threads). Imports the standard library and `agent.probe.protocol` only."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from agent.probe.protocol import Attempt, Outcome, Result

# errors that say the network answered "no way through" (an ICMP unreachable, a local reject)
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ECONNABORTED, errno.EACCES, errno.EPERM}


def open_flow(attempt: Attempt) -> Result:
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    t0 = time.perf_counter()

    def done(outcome: Outcome, detail: str = "") -> Result:
        ms = round((time.perf_counter() - t0) * 1000, 1)
        return Result(
            attempt.flow,
            attempt.source,
            attempt.destination,
            attempt.port,
            outcome,
            ms,
            at,
            detail,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(attempt.timeout_s)
        try:
            sock.bind((attempt.source, 0))
        except OSError as exc:
            return done(
                Outcome.ERROR, f"cannot use source address {attempt.source}: {exc.strerror}"
            )
        t0 = time.perf_counter()
        try:
            sock.connect((attempt.destination, attempt.port))
        except ConnectionRefusedError:
            return done(Outcome.REFUSED, "connection refused (RST)")
        except TimeoutError:
            return done(Outcome.TIMEOUT, f"no answer within {attempt.timeout_s:g} s")
        except OSError as exc:
            if exc.errno in _UNREACHABLE:
                return done(Outcome.UNREACHABLE, exc.strerror or str(exc))
            # ENETUNREACH and the like: the probe has no route from this leg (its own setup)
            return done(Outcome.ERROR, f"the probe could not try: {exc.strerror or exc}")
        return done(Outcome.CONNECTED)
    finally:
        sock.close()


def open_flows(attempts: Sequence[Attempt], *, workers: int = 16) -> list[Result]:
    """Every attempt, in parallel; results in the order given."""
    if not attempts:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(attempts))) as pool:
        return list(pool.map(open_flow, attempts))
