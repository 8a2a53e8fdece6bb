"""The daemon API's wire models, requests AND responses: request bodies and queries (strict,
unknown fields refused), the answer of every route (read leniently: a newer daemon may add fields,
kept for `--json`), the JSON error body, and the translation of a validation failure into a
`ConfigError` naming the field. The service builds its answers through the response models, the
client parses them back into the same models, and the CLI renders from them.

Its own layer, below the service and above the executor (not inside `agent.api`): the service,
which the API calls, builds its answers here, so the models cannot live above it. Imports
pydantic, `agent.errors`, `agent.yamlfile` and the inventory's scalar types only: a leaf that the
service, the API, the client and the CLI may all import; never the executor, a driver or the twin.

This module holds what planning and running take (requests, the plan, a run started, a run's
view, the error body, the helpers); what the daemon reports besides (status, health, run lists)
is in `agent.wire.reports`, the orders on a started run or an incident in `agent.wire.steering`,
each imported where it is used, so a `cordon run --local` creates neither module's classes (#18).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from agent.errors import ConfigError
from agent.inventory.models import Name
from agent.yamlfile import format_loc

__all__ = [
    "JSON",
    "MAX_REASON",
    "MAX_SOAK_SECONDS",
    "ErrorInfo",
    "PlanOut",
    "PlanRequest",
    "Reason",
    "RunId",
    "RunRequest",
    "RunStarted",
    "RunSummary",
    "RunView",
    "invalid_request",
    "parse_body",
    "parse_query",
    "run_id",
]

JSON = dict[str, Any]  # a JSON object: str keys; values str, int, float, bool, None, list, dict

MAX_REASON = 500
MAX_SOAK_SECONDS = 7 * 24 * 3600
MAX_RUNS_LIMIT = 1000

# Run and incident ids: the inventory's Name pattern, upper case allowed (the engine's run ids
# are UTC stamps like 20241015T031200Z-3fa2c1).
_ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DIGEST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$")


def _id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid id: letters, digits and '-', 1-63 characters, "
            "starting and ending with a letter or digit"
        )
    return value


def _reason(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("reason is empty: say why, in a few words")
    if len(value) > MAX_REASON:
        raise ValueError(f"reason is {len(value)} characters long; at most {MAX_REASON}")
    if any(not c.isprintable() for c in value):
        raise ValueError("reason contains control characters (newline, tab, escape...)")
    return value


def _moment(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO-8601 time, e.g. 2024-10-15T03:00:00+00:00") from None
    if moment.tzinfo is None:
        raise ValueError("an ISO-8601 time with its zone, e.g. 2024-10-15T03:00:00+00:00")
    return value


def _digest(value: str) -> str:
    if not _DIGEST_RE.match(value):
        raise ValueError(
            "not a plan digest: letters, digits, ':', '.', '_' or '-', at most 128 characters"
        )
    return value


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"listed more than once: {', '.join(dupes)}")
    return values


RunId = Annotated[str, AfterValidator(_id)]
Reason = Annotated[str, AfterValidator(_reason)]
Digest = Annotated[str, AfterValidator(_digest)]
Moment = Annotated[str, AfterValidator(_moment)]  # ISO-8601 with its zone
Sites = Annotated[tuple[Name, ...], Field(min_length=1), AfterValidator(_unique)]


class _Body(BaseModel):
    """A JSON request body: exact types (no "30" for 30), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class _Query(BaseModel):
    """Query parameters arrive as text: numbers are converted, unknown parameters refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# a playbook parameter's value (zone, device, interface): validated again by the playbook
ParamValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9/._:-]{0,63}$")]
Params = dict[Name, ParamValue]


class PlanRequest(_Body):
    playbook: Name
    sites: Sites | None = None
    params: Params | None = None


class RunRequest(_Body):
    playbook: Name
    sites: Sites | None = None
    digest: Digest  # the digest of the plan the caller saw: the daemon refuses a different one
    reason: Reason | None = None  # mandatory for break-glass (on-call running an emergency one)
    attest: dict[Name, Reason] | None = None  # zone -> why it is clean (reconnection playbooks)
    soak_seconds: Annotated[int, Field(ge=0, le=MAX_SOAK_SECONDS)] | None = None
    params: Params | None = None


class ErrorInfo(BaseModel):
    """The `error` member of every error response; read leniently (a newer daemon may add)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    type: str
    message: str
    hint: str | None = None
    exit_code: int = 1
    issues: list[dict[str, Any]] | None = None  # file/path/line/message, for input-file errors
    device: str | None = None  # for device errors
    operation: str | None = None


# -- responses ---------------------------------------------------------------------------------

Num = int | float  # a time or a duration, kept as sent (an int stays an int in --json)


class _Out(BaseModel):
    """A response body. Fields in the order the service sends them; unknown fields kept."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    def wire(self) -> dict[str, Any]:
        """The JSON object, exactly the fields given (none added by a default)."""
        return self.model_dump(mode="json", exclude_unset=True)


class RunSummary(_Out):
    """One run as `cordon runs` and `cordon status` list it."""

    run_id: str
    playbook: str
    level: str | None = None
    sites: list[str] = []
    actor: str
    status: str
    waiting: str | None = None
    created_at: Num | None = None
    finished_at: Num | None = None
    detail: str | None = None
    steps_total: int = 0
    steps_done: int = 0
    break_glass: bool = False
    reason: str | None = None
    driver_pid: int | None = None
    interrupted: bool = False
    stop_requested: str | None = None


class PlanChange(_Out):
    device: str
    platform: str
    method: str
    commands: list[str] = []
    undo: list[str] = []


class PlanStep(_Out):
    site: str
    step: str
    action: str
    notes: list[str] = []
    changes: list[PlanChange] = []


class FlowChange(_Out):
    flow: str
    must_survive: bool
    change: str  # "cut", "reopened", "stays open", ...


class LinkChange(_Out):
    """An inventory link a step cuts or reopens: what a person confirming a run must read."""

    site: str
    step: str
    link: str
    kind: str
    device: str
    interface: str
    change: str  # "cut" or "reopened"


class PlanOut(_Out):
    """`POST /v1/plan`: the plan, the links it cuts or reopens, and the digest to quote."""

    playbook: str
    level: str
    sites: list[str]
    steps: list[PlanStep] = []
    impact: list[FlowChange] = []
    refusals: list[str] = []
    links: list[LinkChange] = []
    digest: str
    emergency: bool = False
    approval: str = "none"
    changes: int = 0


class RunStarted(_Out):
    """`POST /v1/runs`."""

    run_id: str
    status: str
    playbook: str
    sites: list[str] = []
    changes: int = 0
    break_glass: bool = False
    needs_approval: bool = False


class StepView(_Out):
    seq: int
    site: str
    step: str
    device: str
    method: str
    status: str
    error: str | None = None


class GateView(_Out):
    site: str
    step: str
    status: str
    detail: dict[str, Any] | None = None


class AttestationView(_Out):
    site: str
    zone: str
    actor: str
    reason: str
    at: Num | None = None


class ApprovalView(_Out):
    actor: str
    reason: str | None = None
    at: Num | None = None


class RunView(RunSummary):
    """`GET /v1/runs/{run_id}`: the summary, every step and gate, attestations, approval."""

    steps: list[StepView] = []
    gates: list[GateView] = []
    attestations: list[AttestationView] = []
    approval: ApprovalView | None = None


_B = TypeVar("_B", bound=_Body)
_Q = TypeVar("_Q", bound=_Query)


# -- validation failures -> ConfigError --------------------------------------------------------


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "json_invalid":
        return f"malformed JSON ({err['ctx'].get('error', 'syntax error')})"
    if kind in ("model_type", "model_attributes_type", "dict_type") and not err["loc"]:
        return "the body must be a JSON object"
    return str(err["msg"]).removeprefix("Value error, ")


def invalid_request(what: str, exc: ValidationError) -> ConfigError:
    """One `ConfigError` naming every bad field: `invalid request to ...: sites[0]: ...`."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = format_loc(err["loc"])
        text = _describe(err)
        problems.append(f"{where}: {text}" if where else text)
    return ConfigError(
        f"invalid request to {what}: " + "; ".join(problems),
        hint="nothing was changed; see `cordon --help` for the expected arguments",
    )


def parse_body(model: type[_B], raw: bytes, *, what: str) -> _B:
    """Validate a JSON body (empty counts as `{}`) or raise `ConfigError`."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise invalid_request(what, exc) from None


def parse_query(model: type[_Q], query: Any, *, what: str) -> _Q:
    """Validate query parameters (each given once) or raise `ConfigError`."""
    repeated = sorted({k for k in query if len(query.getall(k)) > 1})
    if repeated:
        raise ConfigError(
            f"invalid request to {what}: {', '.join(repeated)}: given more than once",
            hint="nothing was changed",
        )
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise invalid_request(what, exc) from None


class _IdCheck(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)
    run_id: RunId


def run_id(value: str, *, what: str) -> str:
    """A run id taken from the URL, validated like a field."""
    try:
        return _IdCheck(run_id=value).run_id
    except ValidationError as exc:
        raise invalid_request(what, exc) from None
