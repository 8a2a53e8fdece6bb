"""`agent.yamlfile` makes text, mappings and lists itself while it walks the nodes (one pass,
#18) and leaves every other node to PyYAML's safe constructor: what it returns is what
`yaml.safe_load` returns, for every kind of node a person may write. A mapping with a merge key
`<<` is built after the walk (PyYAML merges by rewriting the nodes an alias walks again): the
issues and lines are those of the file's keys."""

from __future__ import annotations

import pytest
import yaml

from agent import yamlfile
from tests.conftest import EXAMPLE

DOCS = {
    "merge keys": (
        "base: &b {a: 1, b: [x, y]}\none: *b\ntwo:\n  <<: *b\n  c: 3\n"
        "three:\n  <<: [*b, {z: 1}]\n  a: 2\n"
    ),
    "tags": (
        "s: !!set {a, b}\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1]\nt: 2001-12-14\n"
        "f: 1.5\nn: null\nb: yes\nx: !!binary aGVsbG8=\ny: !!str 5\n"
    ),
    "keys that are not text": "k:\n  1: one\n  on: x\n  ~: n\n  2001-12-14: d\n",
    "aliases of lists": "l: &l [1, 2, {a: b}]\nm: [*l, *l]\n",
    "a scalar document": "just text\n",
}


@pytest.mark.parametrize("text", DOCS.values(), ids=DOCS.keys())
def test_a_document_reads_as_safe_load_reads_it(text: str) -> None:
    doc = yamlfile.parse(text, file="doc.yaml", what="test")
    assert doc.issues == []
    assert doc.data == yaml.safe_load(text)


def test_the_example_inventory_reads_as_safe_load_reads_it() -> None:
    text = EXAMPLE.read_text()
    doc = yamlfile.parse(text, file=str(EXAMPLE), what="inventory")
    assert doc.issues == []
    assert doc.data == yaml.safe_load(text)
    assert doc.line(("sites",)) is not None


def test_an_alias_is_its_anchors_object() -> None:
    doc = yamlfile.parse(DOCS["aliases of lists"], file="doc.yaml", what="test")
    assert doc.data["m"][0] is doc.data["l"]
    assert doc.data["m"][1] is doc.data["l"]


def test_a_duplicate_key_is_said_and_the_last_value_kept() -> None:
    doc = yamlfile.parse("a: 1\nb: 2\na: 3\n", file="doc.yaml", what="test")
    assert [(i.path, i.message, i.line) for i in doc.issues] == [("a", "duplicate key", 3)]
    assert doc.data == {"a": 3, "b": 2}


def test_an_unknown_tag_is_a_syntax_error_with_its_line() -> None:
    doc = yamlfile.parse("a: 1\nx: !!python/object:os.system {}\n", file="d.yaml", what="test")
    assert doc.data is None
    [issue] = doc.issues
    assert issue.file == "d.yaml"
    assert issue.line == 2
    assert "could not determine a constructor" in issue.message


# A merge key `<<` is resolved by PyYAML rewriting the mapping's nodes (merged pairs put in front
# of its own): an alias that walks such a node again must still see the file's keys, not the
# merged ones (a false "duplicate key" for an overridden key, lines of merged keys).
MERGES = {
    "an overridden key, the mapping aliased": "base: &b {a: 1}\nm: &m\n  <<: *b\n  a: 2\nn: *m\n",
    "a list of aliases": (
        "x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nm: &m\n  <<: [*x, *y]\n  c: 3\nn: *m\no: *m\n"
    ),
    "nested merges": (
        "a: &a {k: 1, j: 0}\nb: &b\n  <<: *a\n  k: 2\nc: &c\n  <<: *b\n  k: 3\n  l: 4\n"
        "d: *c\ne: {<<: *c, k: 5}\nf: *b\n"
    ),
    "a merged mapping used twice": (
        "base: &b {a: 1, b: 2}\nm: &m {<<: *b, a: 9}\nx: [*m, *m]\ny: {p: *m, q: *m}\n"
    ),
    "an anchor inside a merge": "m: {<<: &b {<<: {x: 1}, y: 2}, y: 3}\nn: *b\no: {<<: *b, x: 5}\n",
    "a merge of merged mappings": (
        "a: &a {p: 1}\nb: &b {<<: *a, q: 2}\nm: &m {<<: [*b, *a], p: 3}\nn: [*m, *b, *a]\n"
    ),
}


@pytest.mark.parametrize("text", MERGES.values(), ids=MERGES.keys())
def test_a_merge_key_under_an_alias_is_no_duplicate(text: str) -> None:
    doc = yamlfile.parse(text, file="doc.yaml", what="test")
    assert doc.issues == []
    assert doc.data == yaml.safe_load(text)


def test_an_aliased_merge_has_the_lines_of_the_file_keys() -> None:
    doc = yamlfile.parse(MERGES["an overridden key, the mapping aliased"], file="d", what="test")
    assert doc.lines[("n", "<<")] == 3
    assert doc.lines[("n", "<<", "a")] == 1
    assert doc.lines[("n", "a")] == 4
    assert doc.data["n"] is doc.data["m"]


def test_two_merge_keys_are_one_duplicate_wherever_the_mapping_is() -> None:
    text = "a: &a {x: 1}\nb: &b {y: 1}\nm: &m {<<: *a, <<: *b, x: 2}\nn: *m\n"
    doc = yamlfile.parse(text, file="doc.yaml", what="test")
    assert [(i.path, i.message, i.line) for i in doc.issues] == [
        ("m.<<", "duplicate key", 3),
        ("n.<<", "duplicate key", 3),
    ]
    assert doc.data == yaml.safe_load(text)


def test_a_list_shared_through_a_merge_is_one_object() -> None:
    doc = yamlfile.parse(
        "l: &l [1, 2]\nb: &b {a: *l}\nm: {<<: *b, c: *l}\nk: {1: *l}\n", file="d", what="test"
    )
    assert doc.issues == []
    data = doc.data
    assert data["m"]["a"] is data["l"]
    assert data["m"]["c"] is data["l"]
    assert data["k"][1] is data["l"]


@pytest.mark.parametrize(
    "text",
    [
        "b: &b {a: 1}\nm: {<<: *b}\nx: !!python/name:os.system ''\ny: \"a\\0b\"\n",
        'x: !!python/object:os.system {}\ny: "a\\0b"\n',
    ],
    ids=["after a merge", "after a tag PyYAML refuses"],
)
def test_the_walks_refusal_comes_before_the_constructors(text: str) -> None:
    doc = yamlfile.parse(text, file="doc.yaml", what="test")
    assert doc.data is None
    assert [(i.path, i.message) for i in doc.issues] == [
        ("y", "control character U+0000 in a value (remove it)")
    ]


def test_a_merge_of_a_scalar_is_the_constructors_error_with_its_line() -> None:
    doc = yamlfile.parse("a: 1\nm: {<<: 5}\n", file="d.yaml", what="test")
    assert doc.data is None
    [issue] = doc.issues
    assert issue.line == 2
    assert "expected a mapping or list of mappings for merging" in issue.message


def test_a_merge_keeps_the_alias_refusals() -> None:
    pairs = zip("pqrst", "qrstu", strict=True)
    bomb = 'p: &p ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n" for p, c in pairs
    )
    doc = yamlfile.parse("b: &b {a: 1}\nm: {<<: *b}\n" + bomb, file="d", what="test")
    assert doc.data is None
    assert "alias bomb" in doc.issues[0].message
    doc = yamlfile.parse("m: &m {a: {<<: *m}}\n", file="d", what="test")
    assert doc.data is None
    assert doc.issues[0].message == "a YAML alias refers to a node that contains it"
