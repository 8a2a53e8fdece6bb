"""Flow availability as the report gives it: % of probes that succeeded, and the worst outage
(from a flow's first failed probe to the next that succeeded, or the end). Pure."""

from __future__ import annotations

from agent.drill.exercise import PROBE_INTERVAL_S, FlowAvailability, _worst_outage
from agent.lab.probe import ProbeResult, ProbeTarget, Sample, Status

A = ProbeTarget("cdn.h.s.z.a", "198.18.0.2", 80)
B = ProbeTarget("cdn.h.s.z.b", "198.18.0.3", 80)


def _samples(pattern: str, target: ProbeTarget, start: float = 100.0) -> list[Sample]:
    """'.' a probe that succeeded, 'x' one that failed, one every PROBE_INTERVAL_S."""
    return [
        Sample(
            start + i * PROBE_INTERVAL_S,
            ProbeResult(target, Status.OK if c == "." else Status.REFUSED, 1.0),
        )
        for i, c in enumerate(pattern)
    ]


def test_the_longest_stretch_of_failures_is_the_worst_outage() -> None:
    samples = sorted(_samples("..x....xxx..x.", A) + _samples("xxxxxx", B), key=lambda s: s.at)
    assert abs(_worst_outage(samples, A) - 3 * PROBE_INTERVAL_S) < 1e-9
    # still failing at the end: counted to the last probe, plus its interval
    assert abs(_worst_outage(samples, B) - 6 * PROBE_INTERVAL_S) < 1e-9


def test_no_failure_no_outage() -> None:
    assert _worst_outage(_samples("......", A), A) == 0.0
    assert _worst_outage([], A) == 0.0


def test_availability_is_the_share_of_probes_that_succeeded() -> None:
    assert FlowAvailability("f", 200, 3, 0.6).percent == 98.5
    assert FlowAvailability("f", 0, 0, 0.0).percent is None  # unknown, not 0 % nor 100 %
