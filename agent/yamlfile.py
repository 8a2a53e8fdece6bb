"""Loads YAML input files (inventories, playbooks, roles) with the line of every key, and turns
validation failures into `Issue`s that name the file, the path inside it and the line.

The one place every input file is read, so the one place hostile YAML is refused: a file that is
not a regular file or is too big, control characters (raw, or written as escapes like "\\0"),
aliases that expand beyond `MAX_ALIAS_NODES` nodes ("billion laughs") or refer to themselves, and
nesting deeper than `MAX_DEPTH`. Each is an `Issue` with the line; nothing is ever raised.

Imports only PyYAML, pydantic and `agent.errors`.
"""

from __future__ import annotations

import stat
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
# Aliases (*name) may repeat at most this many nodes in all: enough for any sharing a person
# writes, and a 300-byte alias bomb stops here instead of expanding to gigabytes.
MAX_ALIAS_NODES = 10_000
# Deeper nesting than this is a mistake (an inventory is about 6 levels deep).
MAX_DEPTH = 64

# Control characters refused anywhere in an input file: C0 (but tab, newline, carriage return),
# DEL and C1. They end up in device commands, log lines and terminal output.
_CONTROL = frozenset(chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))) - {"\t", "\n", "\r"}


class _Refused(Exception):
    """Raised inside the walk to stop at the first hostile construct; becomes an `Issue`."""

    def __init__(self, issue: Issue) -> None:
        super().__init__(issue.message)
        self.issue = issue


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
        text = _read(path, what)
    except _Refused as refused:
        return YamlDocument(file, None, {}, [refused.issue])
    return parse(text, file=file, what=what)


def _read(path: Path, what: str) -> str:
    """The file's text; `_Refused` when it is missing, not a regular file, too big, not UTF-8."""
    file = str(path)
    raw = b""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise _Refused(Issue(file, "", f"{what} file is {kind}"))
        with path.open("rb") as fh:  # at most the limit, whatever the file grew to since stat
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise _Refused(Issue(file, "", f"{what} file is larger than {MAX_FILE_BYTES} bytes"))
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise _Refused(Issue(file, "", f"no such {what} file")) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _Refused(
            Issue(file, "", f"{what} file is not UTF-8 text (byte {exc.start})", line)
        ) from None
    except OSError as exc:
        cause = exc.strerror or type(exc).__name__
        raise _Refused(Issue(file, "", f"cannot read {what} file: {cause}")) from None


def parse(text: str, *, file: str, what: str) -> YamlDocument:
    """Parse `text` (the content of `file`). Raises nothing: problems come back as issues."""
    try:
        return _parse(text, file=file, what=what)
    except _Refused as refused:
        return YamlDocument(file, None, {}, [refused.issue])


def _parse(text: str, *, file: str, what: str) -> YamlDocument:
    bad = _control_char(text)
    if bad is not None:
        line, col, char = bad
        message = (
            f"control character U+{ord(char):04X} at column {col}: not allowed in "
            f"{'an' if what[:1] in 'aeiou' else 'a'} {what} file (remove it)"
        )
        raise _Refused(Issue(file, "", message, line))
    if _FAST is not None:
        try:
            return _compose(_FAST, text, file=file, what=what)
        except _Refused:
            pass  # said again below by the pure-Python parser, in the words users know
    return _compose(yaml.SafeLoader, text, file=file, what=what)


# libyaml's parser (PyYAML's C extension) composes the same nodes with the same line marks, about
# 8x faster: the inventory is read at every `cordon` start (#18). It refuses nesting deeper than
# 1,000 itself. A file it refuses is parsed again by the pure-Python one, whose messages differ.
_FAST: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _compose(parser: type[yaml.SafeLoader], text: str, *, file: str, what: str) -> YamlDocument:
    loader = parser(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _Refused(Issue(file, "", f"{what} file is empty"))
        lines: dict[Loc, int] = {}
        issues: list[Issue] = []
        data = _Walk(file, lines, issues, loader).node(node, (), ())
        if data is _LATER:  # a merge key, or a node PyYAML cannot construct: built here, once
            data = loader.construct_document(node)  # the whole walk has checked every node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        issue = Issue(file, "", f"YAML syntax error: {problem}", mark.line + 1 if mark else None)
        raise _Refused(issue) from None
    except yaml.YAMLError as exc:
        raise _Refused(Issue(file, "", f"YAML error: {exc}")) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise _Refused(Issue(file, "", f"nested deeper than {MAX_DEPTH} levels")) from None
    finally:
        loader.dispose()
    return YamlDocument(file, data, lines, issues)


def _control_char(text: str) -> tuple[int, int, str] | None:
    """(line, column, character) of the first refused control character in `text`."""
    if _CONTROL.isdisjoint(text):
        return None
    for number, line in enumerate(text.split("\n"), 1):
        for col, char in enumerate(line, 1):
            if char in _CONTROL:
                return number, col, char
    return None  # pragma: no cover - isdisjoint said there is one


# The tags of what a person's YAML mostly is: text, mappings, lists. Their nodes are made into
# Python objects during the walk (one pass, #18); any other node (a number, a boolean, null, a
# date, a key that is not text) is constructed by PyYAML's safe constructor, as `yaml.safe_load`
# would. A mapping with a merge key `<<`, and what contains it, is built after the walk by
# `construct_document`: PyYAML merges by rewriting the nodes (`flatten_mapping`), so building it
# during the walk would show a node the walk may visit again (an alias) with other keys than the
# file's (a false "duplicate key", other lines). So is a node PyYAML cannot construct: its error
# comes after the walk's refusals, as before the walk made objects.
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_LATER = object()  # what the walk returns for a node built after it


class _Walk:
    """Records the line of every path, duplicate keys, and refuses hostile structure: a node
    that contains itself, nesting beyond `MAX_DEPTH`, aliases repeating more than
    `MAX_ALIAS_NODES` nodes, control characters written as escapes in a scalar. Returns the
    document's data, equal to what `yaml.safe_load` makes of it (an alias of a mapping or a list
    is the same object as its anchor's), or `_LATER` when PyYAML's constructor is to build it
    after the walk (a merge key, or a node it cannot construct, in it)."""

    def __init__(
        self, file: str, lines: dict[Loc, int], issues: list[Issue], loader: yaml.SafeLoader
    ) -> None:
        self.file = file
        self.lines = lines
        self.issues = issues
        self.loader = loader
        self.seen: set[int] = set()  # ids of nodes visited once: a second visit is an alias
        self.repeated = 0  # nodes visited again through aliases
        # node -> its object: the constructor's own table, so that what it builds (now or after
        # the walk) holds the walk's objects, shared as `yaml.safe_load` shares them
        self.made: dict[Any, Any] = loader.constructed_objects

    def refuse(self, node: yaml.Node, loc: Loc, message: str) -> _Refused:
        return _Refused(Issue(self.file, format_loc(loc), message, node.start_mark.line + 1))

    def node(self, node: yaml.Node, loc: Loc, stack: tuple[int, ...], make: bool = True) -> Any:
        """Checks `node` (at `loc`, under the nodes `stack`) and returns its object (or
        `_LATER`); a key's (`make` False) is left to its mapping."""
        ident = id(node)
        if ident in stack:
            raise self.refuse(node, loc, "a YAML alias refers to a node that contains it")
        if len(stack) >= MAX_DEPTH:
            raise self.refuse(node, loc, f"nested deeper than {MAX_DEPTH} levels")
        again = ident in self.seen
        if again:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_NODES:
                raise self.refuse(
                    node,
                    loc,
                    f"YAML aliases repeat more than {MAX_ALIAS_NODES} nodes (an alias bomb?): "
                    "write the values out or share less",
                )
        else:
            self.seen.add(ident)
        self.lines.setdefault(loc, node.start_mark.line + 1)
        made = self.walk(node, loc, (*stack, ident), make)
        return self.made.get(node, made) if again else made

    def walk(self, node: yaml.Node, loc: Loc, inner: tuple[int, ...], make: bool) -> Any:
        """`node`'s checks and object (`inner`: the nodes above its children)."""
        if isinstance(node, yaml.ScalarNode):
            if isinstance(node.value, str) and not _CONTROL.isdisjoint(node.value):
                char = next(c for c in node.value if c in _CONTROL)
                raise self.refuse(
                    node, loc, f"control character U+{ord(char):04X} in a value (remove it)"
                )
            if not make:
                return None
            return node.value if node.tag == _STR else self.construct(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, loc, inner)
        return self.sequence(node, loc, inner)

    def mapping(self, node: yaml.MappingNode, loc: Loc, inner: tuple[int, ...]) -> Any:
        """A mapping's checks (duplicate keys) and object."""
        seen: set[str] = set()
        # text keys under the plain mapping tag: made here; else by PyYAML
        plain = node.tag == _MAP and all(
            isinstance(k, yaml.ScalarNode) and k.tag == _STR for k, _ in node.value
        )
        later = not plain and any(k.tag == _MERGE for k, _ in node.value)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if self.node(key_node, loc, inner, make=False) is _LATER:  # a key that is a list...
                later = True
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                self.issues.append(
                    Issue(
                        self.file,
                        format_loc(child),
                        "duplicate key",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            self.lines[child] = key_node.start_mark.line + 1
            value = self.node(value_node, child, inner)
            if value is _LATER:
                later = True
            elif plain:
                mapping[key_node.value] = value
        if later:
            return _LATER
        if plain:
            return self.made.setdefault(node, mapping)  # an alias's second walk: first stays
        return self.construct(node)

    def sequence(self, node: yaml.Node, loc: Loc, inner: tuple[int, ...]) -> Any:
        """A sequence's object (its items checked)."""
        later = False
        items: list[Any] = []
        for index, item in enumerate(node.value):
            value = self.node(item, (*loc, index), inner)
            later = later or value is _LATER
            items.append(value)
        if later:
            return _LATER
        if node.tag == _SEQ:
            return self.made.setdefault(node, items)
        return self.construct(node)  # a sequence under another tag (!!omap, !!pairs, ...)

    def construct(self, node: yaml.Node) -> Any:
        """The object PyYAML's safe constructor makes of `node` (its children are made: the
        constructor takes them from `made`), or `_LATER` when it fails: then it fails again
        after the walk, in `construct_document`'s order, as it did before the walk made objects."""
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception:  # any: said (or raised) again by construct_document after the walk
            self.loader.recursive_objects.clear()  # the failed construction's leftovers
            self.loader.deep_construct = False
            return _LATER


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
