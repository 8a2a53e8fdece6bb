"""A probe point's own configuration file (YAML, read by `agent.yamlfile`): its id, where it
listens for the daemon (its management address), its TLS identity (certificate, and key by a
'file:' reference), the daemon's certificate (the only client it accepts), its legs (one address
per zone), the networks it may test, and its bounds. Bad input: every problem with file, path,
line and cause (ProbeConfigError), nothing started. Paths resolve beside the file.

Imports pydantic, `agent.yamlfile`, `agent.secrets` (the key file's checks) and `agent.errors`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agent import yamlfile
from agent.errors import Issue, ProbeConfigError
from agent.probe.protocol import MAX_FLOWS
from agent.secrets import check_file, ref_path

_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: lower-case letters, digits and '-'")
    return value


def _file_ref(value: str) -> str:
    if not value.startswith("file:") or len(value) == 5:
        raise ValueError(
            "the key is given by reference only: 'file:PATH' (a file readable by its owner "
            "only; TLS loads it from a file)"
        )
    return value


def _path(value: str) -> str:
    if not value or len(value) > 400 or any(not c.isprintable() for c in value):
        raise ValueError("not a file path")
    return value


Name = Annotated[str, AfterValidator(_name)]
FileRef = Annotated[str, AfterValidator(_file_ref)]
PathText = Annotated[str, AfterValidator(_path)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    address: ipaddress.IPv4Address
    port: int = Field(default=8443, ge=1, le=65535)


class Leg(_Model):
    zone: Name
    address: ipaddress.IPv4Address


class ProbeFile(_Model):
    id: Name
    listen: Listen
    certificate: PathText
    key: FileRef
    daemon_certificate: PathText  # the daemon's certificate: the one client this probe accepts
    legs: tuple[Leg, ...] = Field(min_length=1)
    allowed: tuple[ipaddress.IPv4Network, ...] = Field(min_length=1)  # networks it may test
    max_flows: int = Field(default=MAX_FLOWS, ge=1, le=MAX_FLOWS)
    keep_results: int = Field(default=512, ge=1, le=10_000)  # scheduled results kept
    pidfile: PathText | None = None


@dataclass(frozen=True)
class ProbeConfig:
    """A validated probe config with its paths resolved."""

    id: str
    address: str
    port: int
    certificate: Path
    key: Path
    daemon_certificate: Path
    legs: dict[str, str]  # address -> zone
    allowed: tuple[ipaddress.IPv4Network, ...]
    max_flows: int
    keep_results: int
    pidfile: Path | None


def load(path: Path) -> ProbeConfig:
    doc = yamlfile.load(path, what="probe config")
    issues: list[Issue] = list(doc.issues)
    if doc.data is None:
        raise ProbeConfigError(issues)
    if not isinstance(doc.data, dict):
        raise ProbeConfigError([*issues, doc.issue((), "a probe config is a mapping")])
    try:
        raw = ProbeFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ProbeConfigError([*issues, *yamlfile.validation_issues(doc, exc)]) from None
    base = path.resolve().parent
    addrs = [str(leg.address) for leg in raw.legs]
    for i, addr in enumerate(addrs):
        if addrs.index(addr) != i:
            issues.append(doc.issue(("legs", i, "address"), f"address {addr} is on two legs"))
        if not any(ipaddress.IPv4Address(addr) in net for net in raw.allowed):
            issues.append(
                doc.issue(("legs", i, "address"), f"leg {addr} is outside every allowed network")
            )
    key = ref_path(raw.key, base)
    files = (("certificate", raw.certificate), ("daemon_certificate", raw.daemon_certificate))
    for field, value in files:
        if not (base / value).is_file():
            issues.append(doc.issue((field,), f"{base / value} is not a file"))
    if issues:
        raise ProbeConfigError(issues)
    check_file(key, what=f"probe {raw.id} TLS key")
    return ProbeConfig(
        id=raw.id,
        address=str(raw.listen.address),
        port=raw.listen.port,
        certificate=base / raw.certificate,
        key=key,
        daemon_certificate=base / raw.daemon_certificate,
        legs={str(leg.address): leg.zone for leg in raw.legs},
        allowed=raw.allowed,
        max_flows=raw.max_flows,
        keep_results=raw.keep_results,
        pidfile=base / raw.pidfile if raw.pidfile else None,
    )
