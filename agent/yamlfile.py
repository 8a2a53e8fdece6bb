"""Loads YAML input files (inventories, playbooks) with the line of every key, and turns
validation failures into `Issue`s that name the file, the path inside it and the line.

Imports only PyYAML, pydantic and `agent.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent.errors import Issue

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]  # report(location, message) during cross-checks

# Input files are written by people; anything bigger than this is a mistake, not an inventory.
MAX_FILE_BYTES = 8 * 1024 * 1024


class YamlDocument:
    """A parsed YAML document plus the line (1-based) where each path starts."""

    def __init__(self, file: str, data: Any, lines: dict[Loc, int], issues: list[Issue]) -> None:
        self.file = file
        self.data = data
        self.lines = lines
        self.issues = issues  # structural problems found while reading (duplicate keys)

    def line(self, loc: Sequence[str | int]) -> int | None:
        """The line of the deepest known prefix of `loc`."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())

    def issue(self, loc: Sequence[str | int], message: str) -> Issue:
        return Issue(self.file, format_loc(loc), message, self.line(loc))


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load(path: Path, *, what: str) -> YamlDocument:
    """Read `path` as one YAML document. Raises nothing: problems come back as issues."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return YamlDocument(
                file,
                None,
                {},
                [Issue(file, "", f"{what} file is {size} bytes; at most {MAX_FILE_BYTES}")],
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return YamlDocument(file, None, {}, [Issue(file, "", f"no such {what} file")])
    except (OSError, UnicodeDecodeError) as exc:
        return YamlDocument(file, None, {}, [Issue(file, "", f"cannot read {what} file: {exc}")])
    return parse(text, file=file, what=what)


def parse(text: str, *, file: str, what: str) -> YamlDocument:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(file, None, {}, [Issue(file, "", f"{what} file is empty")])
        lines: dict[Loc, int] = {}
        issues: list[Issue] = []
        _walk(node, (), lines, issues, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "syntax error"
        return YamlDocument(
            file, None, {}, [Issue(file, "", f"YAML syntax error: {problem}", line)]
        )
    except yaml.YAMLError as exc:
        return YamlDocument(file, None, {}, [Issue(file, "", f"YAML error: {exc}")])
    finally:
        loader.dispose()
    return YamlDocument(file, data, lines, issues)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], issues: list[Issue], file: str) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                issues.append(
                    Issue(file, format_loc(child), "duplicate key", key_node.start_mark.line + 1)
                )
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, issues, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines, issues, file)


def validation_issues(doc: YamlDocument, exc: ValidationError) -> list[Issue]:
    """One issue per pydantic error, located in the YAML file."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(p for p in err["loc"] if not _is_internal(p))
        message = _humanize(err)
        out.append(doc.issue(loc, message))
    return out


def _is_internal(part: str | int) -> bool:
    # pydantic adds the function name of wrap/before validators to locations in unions
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _humanize(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against the documented schema)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")
