"""An exercise scenario file: what is played, by whom, and what the plan expects.

    name: care-2026-la-sagesse          # the exercise's name (a-z, 0-9, '-')
    title: Ransomware at La Sagesse      # for people
    objectives: [text, ...]              # what the exercise must show (at least one)
    hit: rennes-la-sagesse               # the site hit by the attack
    roles:                               # names recorded as the actors
      on_call: Marie Dupont              # required: the on-call operator
      second_operator: Paul Martin       # approves two-person runs
      it: Claire Le Goff                 # the IT team (reconnection, attestations)
      auditor: Jeanne Roux               # observes; named in the report
    injects:                             # optional events the twin plays
      - kind: infected_host              # the host scans the core once it has a route there
        host: rennes-la-sagesse/admin/pc-admin-1
        from_step: reconnect-1           # infected before this step
        until_step: reconnect-1          # reimaged after this one (default: the end)
    steps:
      - name: contain                    # unique
        playbook: isolate-site           # a playbook of the playbooks directory, by name
        sites: hit                       # hit | others (the playbook's targets less the hit
                                         # site) | all (the playbook's targets) | [names]
        by: on_call                      # the role that runs it
        soak_seconds: 3                  # reconnect: each zone's soak on the twin
        attest: {"*": reason}            # reconnect: zone -> why it is clean ("*": every zone)
        approval: second_operator        # the role approving (two-person rule)
        expect: done                     # the planned outcome: done | reisolated

Read with `agent.yamlfile` (no hostile YAML) and validated into frozen models; every problem is
reported with file, path and line (`ScenarioError`). Pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agent import yamlfile
from agent.errors import Issue, ScenarioError
from agent.inventory.models import Label, Name

__all__ = ["Inject", "Roles", "Scenario", "Step", "load", "parse"]

Role = Literal["on_call", "second_operator", "it", "auditor"]


def _person(value: str) -> str:
    if not value.strip() or len(value) > 80:
        raise ValueError("a person's name: 1 to 80 printable characters")
    return value


Person = Annotated[Label, AfterValidator(_person)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Roles(_Model):
    on_call: Person
    second_operator: Person | None = None
    it: Person | None = None
    auditor: Person | None = None

    def of(self, role: Role) -> str | None:
        name: str | None = getattr(self, role)
        return name


class Inject(_Model):
    kind: Literal["infected_host"]
    host: Annotated[str, Field(pattern=r"^[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+$")]
    rate: Annotated[float, Field(gt=0, le=100)] = 20.0
    from_step: Name
    until_step: Name | None = None


class Step(_Model):
    name: Name
    playbook: Name
    sites: Literal["hit", "others", "all"] | tuple[Name, ...] = "all"
    by: Role = "on_call"
    soak_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    attest: dict[str, Label] = Field(default_factory=dict)
    approval: Role | None = None
    expect: Literal["done", "reisolated"] = "done"


class Scenario(_Model):
    name: Name
    title: Label = ""
    objectives: Annotated[tuple[Label, ...], Field(min_length=1)]
    hit: Name
    roles: Roles
    injects: tuple[Inject, ...] = ()
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]
    _path: str = "<memory>"

    @property
    def path(self) -> str:
        return self._path


def load(path: Path) -> Scenario:
    """Read and validate a scenario file; ScenarioError lists every problem (file, path, line)."""
    doc = yamlfile.load(path, what="drill scenario")
    return _validate(doc)


def parse(text: str, *, file: str = "<scenario>") -> Scenario:
    return _validate(yamlfile.parse(text, file=file, what="drill scenario"))


def _validate(doc: yamlfile.YamlDocument) -> Scenario:
    issues: list[Issue] = list(doc.issues)
    if doc.data is None and issues:
        raise ScenarioError(issues)
    if not isinstance(doc.data, dict):
        what = "a scenario is a mapping (see `cordon drill`)"
        raise ScenarioError([*issues, doc.issue((), what)])
    try:
        sc = Scenario.model_validate(doc.data)
    except ValidationError as exc:
        raise ScenarioError([*issues, *yamlfile.validation_issues(doc, exc)]) from None
    issues += _step_issues(sc, doc) + _inject_issues(sc, doc)
    if issues:
        raise ScenarioError(issues)
    sc._path = doc.file
    return sc


def _step_issues(sc: Scenario, doc: yamlfile.YamlDocument) -> list[Issue]:
    issues: list[Issue] = []
    names = [s.name for s in sc.steps]
    for i, step in enumerate(sc.steps):
        if step.name in names[:i]:
            issues.append(doc.issue(("steps", i, "name"), f"step {step.name!r} is named twice"))
        for role_key, role in (("by", step.by), ("approval", step.approval)):
            if role is not None and sc.roles.of(role) is None:
                issues.append(
                    doc.issue(
                        ("steps", i, role_key),
                        f"role {role} plays here but roles.{role} names nobody",
                    )
                )
        if step.approval is not None and sc.roles.of(step.approval) == sc.roles.of(step.by):
            issues.append(
                doc.issue(
                    ("steps", i, "approval"),
                    "the approver must be another person than the one who runs the step "
                    "(two-person rule)",
                )
            )
    return issues


def _inject_issues(sc: Scenario, doc: yamlfile.YamlDocument) -> list[Issue]:
    issues: list[Issue] = []
    names = [s.name for s in sc.steps]
    for i, inject in enumerate(sc.injects):
        for key in ("from_step", "until_step"):
            ref = getattr(inject, key)
            if ref is not None and ref not in names:
                issues.append(doc.issue(("injects", i, key), f"no step named {ref!r}"))
        if (
            inject.until_step in names
            and inject.from_step in names
            and names.index(inject.until_step) < names.index(inject.from_step)
        ):
            issues.append(
                doc.issue(("injects", i, "until_step"), "ends before the step it starts at")
            )
    return issues
