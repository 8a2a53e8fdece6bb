"""`agent.yamlfile` makes text, mappings and lists itself while it walks the nodes (one pass,
#18) and leaves every other node to PyYAML's safe constructor: what it returns is what
`yaml.safe_load` returns, for every kind of node a person may write."""

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
