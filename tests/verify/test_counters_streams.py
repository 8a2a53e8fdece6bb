"""The twin's clinical streams, without a twin: a stream spec is checked before anything is
opened (twin addresses only, a sane port and interval, one stream a flow) and survives its file;
the spec the twin builds streams every must-survive flow of the example, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import LabError, SafetyError
from agent.inventory import load
from agent.lab import streams
from agent.lab.topology import blueprint
from tests.daemon.test_drift import EXAMPLE


def spec(tmp_path: Path, *items: streams.Stream) -> streams.StreamSpec:
    return streams.StreamSpec(items, str(tmp_path / "r"), str(tmp_path / "s.json"))


def test_a_stream_outside_the_twin_or_malformed_is_refused(tmp_path: Path) -> None:
    ok = streams.Stream("a-flow", "cdn.h1", "198.18.1.10", 2575)
    with pytest.raises(SafetyError):
        streams.validate(spec(tmp_path, streams.Stream("f", "cdn.h1", "10.0.0.1", 80)))
    with pytest.raises(LabError, match="out of range"):
        streams.validate(spec(tmp_path, streams.Stream("f", "cdn.h1", "198.18.1.10", 0)))
    with pytest.raises(LabError, match="interval"):
        streams.validate(spec(tmp_path, streams.Stream("f", "cdn.h1", "198.18.1.10", 80, 0.0)))
    with pytest.raises(LabError, match="given twice"):
        streams.validate(spec(tmp_path, ok, ok))
    with pytest.raises(LabError):
        streams.validate(spec(tmp_path, streams.Stream("f", "../etc", "198.18.1.10", 80)))
    path = tmp_path / "spec.json"
    streams.dump_spec(spec(tmp_path, ok), path)
    assert streams.load_spec(path) == spec(tmp_path, ok)
    path.write_text('{"streams": [{"flow": "x"}]}')
    with pytest.raises(LabError, match="stream spec"):
        streams.load_spec(path)
    assert streams.read_status(tmp_path / "absent.json") == {}


def test_the_twin_streams_every_must_survive_flow(tmp_path: Path) -> None:
    inv = load(EXAMPLE)
    bp = blueprint(inv, "cdn")
    built = streams.spec_for(inv, bp, tmp_path)
    streams.validate(built)
    must = {f.name for f in inv.flows if f.must_survive}
    assert {s.flow for s in built.streams} == must
    assert len(must) == 42
    assert all(s.interval_s == streams.INTERVAL_S == 0.2 for s in built.streams)
