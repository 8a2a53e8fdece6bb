"""Scenario files: the shipped one is valid for the example group; mistakes are reported with
file, path, line and cause (never a traceback); references are checked against the group."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent.platforms.registry  # noqa: F401 - registers the platforms the inventory names
from agent.drill import exercise, scenario
from agent.errors import DrillError, ScenarioError
from agent.inventory import load

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "playbooks" / "drills" / "care-la-sagesse.yaml"
EXAMPLE = ROOT / "inventory" / "hospi-grand-ouest.yaml"
SHORT = Path(__file__).with_name("data") / "short.yaml"

GOOD = """\
name: t
objectives: [show containment]
hit: rennes-la-sagesse
roles: {on_call: Alice, second_operator: Bob}
steps:
  - name: contain
    playbook: isolate-site
    sites: hit
  - name: restore
    playbook: restore-normal
    approval: second_operator
"""


def test_the_shipped_scenario_fits_the_example_group() -> None:
    sc = scenario.load(SHIPPED)
    exercise.check_scenario(sc, load(EXAMPLE))
    assert sc.hit == "rennes-la-sagesse"
    assert [s.expect for s in sc.steps].count("reisolated") == 1
    assert sc.injects[0].from_step == "reconnect-first"


def test_a_good_scenario_reads() -> None:
    sc = scenario.parse(GOOD)
    assert sc.roles.of(sc.steps[1].by) == "Alice"
    assert sc.roles.of("second_operator") == "Bob"
    assert sc.steps[0].sites == "hit" and sc.steps[1].sites == "all"


def _issues(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as refused:
        scenario.parse(text, file="s.yaml")
    return [str(i) for i in refused.value.issues]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("objectives: [show containment]", "objectives: []", "s.yaml:2: objectives:"),
        ("    sites: hit", "    sites: everywhere", "s.yaml:8: steps[0].sites:"),
        ("    sites: hit", "    sitez: hit", "s.yaml:8: steps[0].sitez: unknown key"),
        (
            "name: restore",
            "name: contain",
            "s.yaml:9: steps[1].name: step 'contain' is named twice",
        ),
        ("approval: second_operator", "approval: it", "roles.it names nobody"),
        ("approval: second_operator", "approval: on_call", "two-person rule"),
        ("roles: {on_call: Alice, ", "roles: {", "s.yaml:4: roles.on_call: required key"),
        ("hit: rennes-la-sagesse", "hit: Rennes!", "s.yaml:3: hit:"),
    ],
)
def test_mistakes_are_located(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    issues = _issues(GOOD.replace(old, new))
    assert any(expected in i for i in issues), issues


def test_an_inject_naming_no_step_is_refused() -> None:
    text = GOOD + "injects:\n  - {kind: infected_host, host: a/b/c, from_step: nope}\n"
    assert any("injects[0].from_step: no step named 'nope'" in i for i in _issues(text))


def test_hostile_yaml_is_refused_without_a_traceback() -> None:
    issues = _issues("a: &x [*x]\n")
    assert issues


def test_references_are_checked_against_the_group() -> None:
    text = GOOD.replace("hit: rennes-la-sagesse", "hit: nowhere").replace(
        "playbook: restore-normal", "playbook: no-such-playbook"
    )
    with pytest.raises(DrillError) as refused:
        exercise.check_scenario(scenario.parse(text), load(EXAMPLE))
    assert "no site 'nowhere'" in refused.value.message
    assert "no playbook 'no-such-playbook'" in refused.value.message


def test_the_test_scenario_fits_the_small_group() -> None:
    exercise.check_scenario(scenario.load(SHORT), load(SHORT.with_name("small-10net.yaml")))
