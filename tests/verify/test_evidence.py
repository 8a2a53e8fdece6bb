"""The one verdict per flow drawn from several sources' evidence."""

from agent.verify.evidence import Evidence, FlowStatus, Seen, combine


def test_a_contradiction_wins_over_confirmations() -> None:
    [r] = combine(
        {"f": False},
        [
            Evidence("f", "device:fw1", Seen.CLOSED),
            Evidence("f", "probe:p1", Seen.OPEN, "connected"),
        ],
    )
    assert r.status is FlowStatus.FAILED
    assert r.confirmed_by == ("device:fw1",)
    assert r.contradicted_by == ("probe:p1",)
    assert r.problem() == "flow f: expected closed, observed open (by probe:p1)"


def test_no_source_that_could_tell_is_unverified_never_passed() -> None:
    results = combine(
        {"a": True, "b": True},
        [Evidence("a", "device:sw1", Seen.UNKNOWN, "platform cannot evaluate flows")],
    )
    assert [r.status for r in results] == [FlowStatus.UNVERIFIED, FlowStatus.UNVERIFIED]
    assert all(r.problem() is None for r in results)


def test_confirmed_by_each_source_once_and_foreign_flows_ignored() -> None:
    [r] = combine(
        {"a": True},
        [
            Evidence("a", "counters:fw1", Seen.OPEN),
            Evidence("a", "counters:fw1", Seen.OPEN),
            Evidence("a", "twin", Seen.OPEN),
            Evidence("zz", "twin", Seen.CLOSED),
        ],
    )
    assert r.status is FlowStatus.PASSED
    assert r.confirmed_by == ("counters:fw1", "twin")
    assert len(r.evidence) == 3
