"""One audit vocabulary: every event the code logs is in `agent.events`, every entry there is
logged somewhere, and the report reads only events that something logs (a scan of the source)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agent.events import VOCABULARY

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
# the modules that read the log: the report, its facts, the regulators' drafts
READERS = [AGENT / "audit" / n for n in ("report.py", "facts.py", "drafts.py")]
LEVELS = {"debug", "info", "warning", "warn", "error", "critical", "exception", "msg", "fatal"}
EVENT_NAME = re.compile(r"[a-z][a-z_]*\.[a-z][a-z_]*")


def _stdlib_loggers(tree: ast.Module) -> set[str]:
    """Names bound to `logging.getLogger(...)`: plain logging, not the audit trail."""
    return {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "getLogger"
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _is_logger(node: ast.expr) -> bool:
    """`log`, `self.log`, `logger`, `get_logger()`, `audit.get_logger(...)`: the audit trail's
    loggers as the code names them (not `err.error(...)` or another object's method)."""
    if isinstance(node, ast.Call):
        f = node.func
        return (isinstance(f, ast.Name) and f.id == "get_logger") or (
            isinstance(f, ast.Attribute) and f.attr == "get_logger"
        )
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return name in ("log", "logger")


def _is_level(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in LEVELS and _is_logger(node.value)


def emitted(tree: ast.Module, where: str) -> dict[str, list[str]]:
    """Event names logged in `tree`: the first argument of `<logger>.info(...)` & co, also through
    a local alias (`emit = log.info if ok else log.error; emit("device.change", ...)`)."""
    plain = _stdlib_loggers(tree)
    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and (
            _is_level(node.value)
            or (
                isinstance(node.value, ast.IfExp)
                and _is_level(node.value.body)
                and _is_level(node.value.orelse)
            )
        )
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in LEVELS:
            if isinstance(func.value, ast.Name) and func.value.id in plain:
                continue
            if not _is_logger(func.value):
                continue
        elif not (isinstance(func, ast.Name) and func.id in aliases):
            continue
        if not node.args:
            continue
        first = node.args[0]
        name = first.value if isinstance(first, ast.Constant) else None
        if not isinstance(name, str):
            name = f"<not a literal: {ast.unparse(first)}>"
        found.setdefault(name, []).append(f"{where}:{node.lineno}")
    return found


def all_emitted() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(AGENT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, places in emitted(ast.parse(path.read_text(encoding="utf-8")), rel).items():
            out.setdefault(name, []).extend(places)
    return out


def read_by_report() -> set[str]:
    """Event names the report refers to: every string literal in it shaped like an event."""
    return {
        node.value
        for path in READERS
        if path.exists()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and EVENT_NAME.fullmatch(node.value)
    }


def test_every_logged_event_is_in_the_vocabulary() -> None:
    """Code logs only documented events, always by a literal name."""
    undocumented = {n: p for n, p in all_emitted().items() if n not in VOCABULARY}
    assert undocumented == {}, "add these to agent/events.py (or log a documented name)"


def test_every_vocabulary_entry_is_logged_somewhere() -> None:
    """The vocabulary documents nothing that no code logs."""
    assert sorted(set(VOCABULARY) - set(all_emitted())) == []


def test_the_report_reads_only_events_something_logs() -> None:
    """Every event name the report selects on is logged by some producer."""
    reads = read_by_report()
    assert "incident.declared" in reads  # the scan sees the report's names
    assert sorted(reads - set(all_emitted())) == []


def test_the_scan_sees_direct_aliased_and_unknown_events() -> None:
    """The scanner finds a direct call, an aliased one and a non-literal, and skips stdlib."""
    tree = ast.parse(
        "import logging\n_log = logging.getLogger('x')\n"
        "log.info('run.started')\n"
        "emit = log.info if ok else log.error\nemit('device.change')\n"
        "self.log.warning(name)\n"
        "_log.error('internal error on %s', p)\n"
        "raise err.error('not a log call')\n"
        "audit.get_logger().warning('access.refused')\n"
    )
    assert emitted(tree, "t") == {
        "run.started": ["t:3"],
        "device.change": ["t:5"],
        "<not a literal: name>": ["t:6"],
        "access.refused": ["t:9"],
    }
