"""The probe point's wire protocol: one JSON object per line, one order and one answer per
connection, over mutual TLS (`agent.probe.channel`). Orders are validated strictly here, before
anything is opened: only the probe's own leg addresses as sources, only destinations inside the
networks its config allows, a bounded number of flows and of seconds; anything else is refused
with a clear error naming the field. Pure: the standard library only.

Orders (`op`):
- `hello`: who the probe is (id, legs, version) and when it last ran a schedule;
- `run`: open these flows now and answer each result;
- `schedule`: open these flows every `interval_s` seconds (an empty list stops it), results kept;
- `results`: the kept results of the scheduled runs (newest last).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

VERSION = 1
MAX_LINE = 64 * 1024  # bytes of one order or answer line
MAX_FLOWS = 64  # flows in one order
TIMEOUT_S = (0.05, 10.0)  # a flow's connect timeout bounds
INTERVAL_S = (5.0, 3600.0)  # a schedule's period bounds
OPS = ("hello", "run", "schedule", "results")
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class OrderError(ValueError):
    """An order the probe refuses (the message says which field and why; sent back as is)."""


class Outcome(StrEnum):
    CONNECTED = "connected"  # the TCP handshake completed
    REFUSED = "refused"  # a RST came back (nothing listens, or a reject)
    TIMEOUT = "timeout"  # nothing came back within the timeout (a drop, or a dead host)
    UNREACHABLE = "unreachable"  # an ICMP unreachable came back (a reject, or no ARP answer)
    ERROR = "error"  # the probe itself could not try (its address, its routes): proves nothing


@dataclass(frozen=True)
class Attempt:
    """One flow to open: from `source` (one of the probe's legs) to `destination`:`port`."""

    flow: str
    source: str
    destination: str
    port: int
    timeout_s: float


@dataclass(frozen=True)
class Result:
    flow: str
    source: str
    destination: str
    port: int
    outcome: Outcome
    elapsed_ms: float
    at: str  # ISO 8601 UTC, when the attempt started
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["outcome"] = self.outcome.value
        return out


@dataclass(frozen=True)
class Order:
    op: str
    attempts: tuple[Attempt, ...] = ()
    interval_s: float = 0.0


def encode(obj: Mapping[str, Any]) -> bytes:
    line = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise OrderError(f"message is {len(line)} bytes; at most {MAX_LINE}")
    return line


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise OrderError(f"message is longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OrderError(f"message is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise OrderError("message is not a JSON object")
    return obj


def order_json(order: Order) -> dict[str, Any]:
    out: dict[str, Any] = {"op": order.op, "version": VERSION}
    if order.op in ("run", "schedule"):
        out["flows"] = [asdict(a) for a in order.attempts]
    if order.op == "schedule":
        out["interval_s"] = order.interval_s
    return out


def parse_order(
    obj: Mapping[str, Any],
    *,
    legs: Collection[str],
    allowed: Sequence[ipaddress.IPv4Network],
    max_flows: int = MAX_FLOWS,
) -> Order:
    """The order in `obj`, or OrderError: unknown keys or op, a source that is not one of `legs`,
    a destination outside `allowed` (or loopback, multicast, one of our own legs), a port or a
    timeout out of bounds, more than `max_flows` flows, a flow named twice."""
    _keys(obj, {"op", "version", "flows", "interval_s"}, "order")
    if obj.get("version") != VERSION:
        raise OrderError(f"order version {obj.get('version')!r}; this probe speaks {VERSION}")
    op = obj.get("op")
    if op not in OPS:
        raise OrderError(f"op {op!r} is not one of {', '.join(OPS)}")
    if op in ("hello", "results"):
        if set(obj) - {"op", "version"}:
            raise OrderError(f"op {op} takes no arguments")
        return Order(op)
    flows = obj.get("flows")
    if not isinstance(flows, list):
        raise OrderError("flows: a list of flows is required")
    if len(flows) > max_flows:
        raise OrderError(f"flows: {len(flows)} flows; this probe opens at most {max_flows}")
    if op == "run" and not flows:
        raise OrderError("flows: a run needs at least one flow")
    attempts = tuple(_attempt(f, i, legs=legs, allowed=allowed) for i, f in enumerate(flows))
    names = [a.flow for a in attempts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise OrderError(f"flows: {', '.join(dupes)} named more than once")
    interval = 0.0
    if op == "schedule":
        interval = _number(obj.get("interval_s"), "interval_s", *INTERVAL_S) if flows else 0.0
    elif "interval_s" in obj:
        raise OrderError("interval_s: only a schedule has a period")
    return Order(op, attempts, interval)


def _attempt(
    raw: Any,
    i: int,
    *,
    legs: Collection[str],
    allowed: Sequence[ipaddress.IPv4Network],
) -> Attempt:
    where = f"flows[{i}]"
    if not isinstance(raw, dict):
        raise OrderError(f"{where}: not an object")
    _keys(raw, {"flow", "source", "destination", "port", "timeout_s"}, where)
    missing = {"flow", "source", "destination", "port", "timeout_s"} - set(raw)
    if missing:
        raise OrderError(f"{where}: missing {', '.join(sorted(missing))}")
    name = raw["flow"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise OrderError(f"{where}.flow: not a flow name (lower-case letters, digits, '-')")
    source = _address(raw["source"], f"{where}.source")
    if str(source) not in legs:
        raise OrderError(
            f"{where}.source: {source} is not one of this probe's leg addresses "
            f"({', '.join(sorted(legs))}); a probe opens flows from its own addresses only"
        )
    dest = _address(raw["destination"], f"{where}.destination")
    if str(dest) in legs or not (dest.is_global or dest.is_private) or dest.is_loopback:
        raise OrderError(f"{where}.destination: {dest} is not a host this probe may test")
    if dest.is_multicast or dest.is_unspecified or dest.is_link_local:
        raise OrderError(f"{where}.destination: {dest} is not a unicast host address")
    if not any(dest in net for net in allowed):
        nets = ", ".join(str(n) for n in allowed) or "none"
        raise OrderError(
            f"{where}.destination: {dest} is outside the networks this probe may test ({nets})"
        )
    port = raw["port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise OrderError(f"{where}.port: {port!r} is not a TCP port (1-65535)")
    timeout = _number(raw["timeout_s"], f"{where}.timeout_s", *TIMEOUT_S)
    return Attempt(name, str(source), str(dest), port, timeout)


def _keys(obj: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(obj) - known)
    if unknown:
        raise OrderError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _address(value: Any, where: str) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise OrderError(f"{where}: not an IPv4 address")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise OrderError(f"{where}: {value[:40]!r} is not an IPv4 address") from None


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OrderError(f"{where}: {value!r} is not a number of seconds in [{low:g}, {high:g}]")
    return float(value)


def result_from(obj: Any) -> Result:
    """A result as the probe sent it (the daemon side); OrderError if malformed."""
    if not isinstance(obj, dict):
        raise OrderError("a result is not an object")
    try:
        return Result(
            flow=str(obj["flow"]),
            source=str(obj["source"]),
            destination=str(obj["destination"]),
            port=int(obj["port"]),
            outcome=Outcome(obj["outcome"]),
            elapsed_ms=float(obj["elapsed_ms"]),
            at=str(obj["at"]),
            detail=str(obj.get("detail", ""))[:300],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise OrderError(f"a result is malformed: {type(exc).__name__} {exc}") from None
