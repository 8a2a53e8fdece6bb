"""The audit pipeline's close at process exit: an audit store gone by then is said in one line,
never a traceback (the PostgreSQL pass's test process showed one when its server stopped first)."""

from __future__ import annotations

import pytest

from agent.audit import pipeline
from agent.errors import AuditError


def test_a_closing_seal_that_cannot_be_written_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def gone() -> None:
        raise AuditError(
            "cannot write the audit trail to PostgreSQL at postgresql://cordon@/x: failed\n"
            "\tIs the server running?"  # libpq's messages run over lines
        )

    monkeypatch.setattr(pipeline, "close", gone)
    pipeline._close_at_exit()  # raises nothing
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("cordon: the audit chain's closing seal was not written: cannot write")
    assert "Traceback" not in err


def test_a_closing_seal_written_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    closed: list[bool] = []
    monkeypatch.setattr(pipeline, "close", lambda: closed.append(True))
    pipeline._close_at_exit()
    assert closed == [True]
    assert capsys.readouterr().err == ""
