"""The report's "Configuration changes": per device a run changed, its configuration before and
after as the evidence store holds them (both sha256s, a unified diff of the two blobs); a blob
missing or altered, or an after snapshot not taken, is said and no content is invented. Pure:
a log written with the chain writer and blobs stored as the drivers store them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.audit import evidence
from agent.audit.chain import ChainWriter
from agent.audit.report import build, render
from agent.audit.seals import seal_head
from agent.audit.verify import verify

T0 = datetime(2024, 10, 15, 3, 0, tzinfo=UTC)
RUN = "r-isolate"
BEFORE = "table inet filter {\n  chain fwd {\n    policy accept;\n  }\n}\n"
AFTER = (
    "table inet filter {\n  chain fwd {\n    policy accept;\n  }\n}\n"
    "table inet cordon {\n  chain fwd {\n"
    '    oifname "wan0" drop comment "cordon:cut-internet"\n'
    "  }\n}\n"
)
# a device whose configuration holds markup and backticks (escaped in HTML, fenced in markdown)
SW_BEFORE = "interface 1/1/1\n   description <uplink> ```core```\n   no shutdown\n"
SW_AFTER = "interface 1/1/1\n   description <uplink> ```core```\n   shutdown\n"
GOLDEN = Path(__file__).with_name("golden")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config_log(log_dir: Path) -> Path:
    """A run on rennes: rns-fw1 and rns-sw1 backed up before, changed, read again after the run
    (rns-fw1 differs, rns-sw1 too), rns-ap1 changed but unreadable after the run."""
    clock = Clock()
    writer = ChainWriter(log_dir, clock=clock)
    sha = {
        name: evidence.store(text, log_dir=log_dir)
        for name, text in (
            ("fw-before", BEFORE),
            ("fw-after", AFTER),
            ("sw-before", SW_BEFORE),
            ("sw-after", SW_AFTER),
            ("ap-before", "wlan off\n"),
        )
    }

    def at(seconds: float, event: str, **fields: Any) -> None:
        clock.now = T0 + timedelta(seconds=seconds)
        writer.append({"event": event, "level": "info", "run_id": RUN, "actor": "ops", **fields})

    at(0, "run.started", playbook="isolate-site", sites=["rennes"], run_level="L3")
    for n, (device, key) in enumerate((("rns-fw1", "fw"), ("rns-sw1", "sw"), ("rns-ap1", "ap"))):
        at(1 + n, "config.before", device=device, config_sha256=sha[f"{key}-before"])
    at(5, "step.succeeded", site="rennes", device="rns-fw1", step="cut-internet", outcome="ok")
    at(6, "run.finished", outcome="done", duration_s=6.0, failed=0, flow_problems=0)
    for n, (device, key) in enumerate((("rns-fw1", "fw"), ("rns-sw1", "sw"))):
        at(
            7 + n,
            "config.after",
            site="rennes",
            device=device,
            run_outcome="done",
            config_sha256=sha[f"{key}-after"],
            outcome="saved",
        )
    at(
        9,
        "config.after",
        site="rennes",
        device="rns-ap1",
        run_outcome="done",
        outcome="failed",
        error="rns-ap1: connection refused",
    )
    seal_head(writer, reason="test")
    writer.close()
    return log_dir


def _report(log: Path) -> Any:
    return build(log, run=RUN, integrity=verify(log), now=T0 + timedelta(hours=1))


def test_each_changed_device_shows_both_sha256s_and_the_diff(config_log: Path) -> None:
    """The rule Cordon added is a `+` line of the firewall's diff; the sha256s are the ones the
    config.before / config.after records name (and the store's blobs hash to them)."""
    report = _report(config_log)
    fw = next(c for c in report.configs if c.change.device == "rns-fw1")
    records = {r.seq: r for r in report.rows}
    assert records[fw.change.before_seq or 0].event == "config.before"
    assert records[fw.change.after_seq or 0].event == "config.after"
    assert fw.change.before_sha256 == evidence.store(BEFORE, log_dir=config_log)
    assert fw.change.after_sha256 == evidence.store(AFTER, log_dir=config_log)
    assert '+    oifname "wan0" drop comment "cordon:cut-internet"' in fw.diff
    assert not any(line.startswith("-") and not line.startswith("---") for line in fw.diff)
    text = render(report, "text")
    assert f"- before: sha256 {fw.change.before_sha256} [seq 2]" in text
    assert f"- after: sha256 {fw.change.after_sha256} [seq 7]" in text
    # the section sits after the summary, before the timeline
    assert text.index("Flow verification") < text.index("CONFIGURATION CHANGES")
    assert text.index("CONFIGURATION CHANGES") < text.index("TIMELINE")


def test_an_after_snapshot_not_taken_is_said(config_log: Path) -> None:
    ap = next(c for c in _report(config_log).configs if c.change.device == "rns-ap1")
    assert ap.diff == ()
    assert ap.after == "NOT TAKEN: rns-ap1: connection refused [seq 9]"


def test_a_missing_or_altered_blob_is_said_never_shown(config_log: Path) -> None:
    """No content is shown from a blob that no longer hashes to its record's sha256."""
    report = _report(config_log)
    fw = next(c for c in report.configs if c.change.device == "rns-fw1")
    sw = next(c for c in report.configs if c.change.device == "rns-sw1")
    after = evidence.path_for(config_log, fw.change.after_sha256 or "")
    after.chmod(0o640)
    after.write_text(AFTER.replace("drop", "accept"))
    evidence.path_for(config_log, sw.change.before_sha256 or "").unlink()
    report = _report(config_log)
    fw = next(c for c in report.configs if c.change.device == "rns-fw1")
    sw = next(c for c in report.configs if c.change.device == "rns-sw1")
    assert fw.diff == () and sw.diff == ()
    assert "was altered" in fw.verdict and "`cordon audit verify` reports it" in fw.verdict
    assert "is missing from evidence/sha256" in sw.verdict
    text = render(report, "text")
    assert "accept comment" not in text
    assert not verify(config_log).ok  # the verifier says it too


def test_the_same_configuration_after_is_said(log_dir: Path) -> None:
    """A rollback that restored the device: no difference."""
    writer = ChainWriter(log_dir, clock=Clock())
    digest = evidence.store(BEFORE, log_dir=log_dir)
    writer.append({"event": "config.before", "run_id": "r", "device": "d", "config_sha256": digest})
    writer.append(
        {
            "event": "config.after",
            "run_id": "r",
            "device": "d",
            "run_outcome": "rolled_back",
            "config_sha256": digest,
        }
    )
    writer.close()
    (change,) = build(log_dir, run="r").configs
    assert change.same and change.diff == ()
    assert change.title == "d, run r, after the run ended rolled_back"
    assert change.verdict == "no difference: the configuration after is the one before"


def test_html_escapes_the_configuration(config_log: Path) -> None:
    page = render(_report(config_log), "html")
    assert "description &lt;uplink&gt;" in page
    assert "<uplink>" not in page
    assert '<span class="add">+   shutdown</span>' in page


@pytest.mark.parametrize("fmt", ["txt", "md", "html"])
def test_golden_config_changes(config_log: Path, fmt: str) -> None:
    """The whole record, byte for byte (the log's path aside). After an intended change:
    CORDON_GOLDEN_UPDATE=1 pytest tests/audit/test_config_diff.py -k golden; read the diff."""
    text = render(_report(config_log), "text" if fmt == "txt" else fmt)
    text = text.replace(str(config_log), "<LOG>")
    path = GOLDEN / f"config.{fmt}"
    if os.environ.get("CORDON_GOLDEN_UPDATE") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
