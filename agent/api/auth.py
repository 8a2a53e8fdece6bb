"""Who is calling the daemon, and may they: the roles file, caller identity (socket peer
credentials, a per-operator bearer token, or over TCP a pinned client certificate), and the pure
policy `authorize`.

Imports pydantic, `agent.yamlfile`, `agent.secrets`, `agent.settings`, `agent.errors` and the
inventory's `SecretRef`; `agent.mtls` (cryptography's x509) only when a roles file lists client
certificates (#18: a `--local` run reads none); never aiohttp, the service, the engine or a
driver. Token values live only in `Policy` (never logged, never in an error message).

The roles file (YAML, e.g. `inventory/roles.yaml`):

    oncall: [alice]                 # run emergency playbooks (break-glass, with a reason); read
    operator: [bob, carol]          # all playbooks, approve, rollback, attest, incidents; read
    auditor: [dave]                 # read only: status, runs, show, audit report
    root_is: operator               # the role of uid 0 (the daemon's own admin); omit: none
    tokens:                         # per-operator bearer tokens, by reference only
      erin: "env:CORDON_TOKEN_ERIN" # ('env:NAME' or 'file:PATH', relative to the roles file)
    certificates:                   # the API over TCP (CORDON_API_LISTEN): each operator's
      bob: certs/bob.pem            # client certificate(s), PEM files relative to the roles
      dave: [certs/dave.pem, certs/dave-laptop.pem]   # file (public: no key here)

A user may hold several roles. uid 0 has the roles listed for `root` plus `root_is`. A token
stands for the user it is listed under, who must hold a role in the file. So does a client
certificate: over TCP the caller is the user whose certificate the TLS handshake proved (by its
SHA-256 pin), never a token alone (`identify_certificate`); a certificate listed twice is refused.
"""

from __future__ import annotations

import contextlib
import hmac
import pwd
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from agent import settings, yamlfile
from agent.errors import AccessRefused, ConfigError, Issue, SecretError
from agent.inventory.models import SecretRef
from agent.secrets import resolve

__all__ = [
    "ENV_ROLES",
    "Action",
    "Caller",
    "Decision",
    "Policy",
    "Role",
    "RolesFile",
    "authorize",
    "check_local_roles",
    "default_roles_path",
    "may",
    "user_name",
]

ENV_ROLES = "CORDON_ROLES"


class Role(StrEnum):
    ONCALL = "oncall"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Action(StrEnum):
    """What a request asks for; also the `action` of its `access.refused` event."""

    STATUS = "status"
    PLAN = "plan"
    RUN = "run"
    RUNS = "runs"
    SHOW = "show"
    APPROVE = "approve"
    ROLLBACK = "rollback"
    ATTEST = "attest"
    INCIDENT_OPEN = "incident.open"
    INCIDENT_CLOSE = "incident.close"
    INCIDENT_NOTIFY = "incident.notify"
    AUDIT_REPORT = "audit.report"


# What each role may do. RUN for on-call is further limited to emergency playbooks (break-glass).
GRANTS: Mapping[Role, frozenset[Action]] = {
    Role.ONCALL: frozenset({Action.STATUS, Action.PLAN, Action.RUNS, Action.SHOW, Action.RUN}),
    Role.OPERATOR: frozenset(Action),
    Role.AUDITOR: frozenset({Action.STATUS, Action.RUNS, Action.SHOW, Action.AUDIT_REPORT}),
}


# a bearer token shorter than this is refused (guessable; and the audit scrubber would mask its
# text inside ordinary words)
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Caller:
    """The identity a request acts under. `via`: "peer" (socket credentials), "token", or
    "certificate" (a TLS client certificate over TCP: no local process, `uid` is -1)."""

    user: str
    uid: int  # the connecting process's uid (for a token, not necessarily the token's user)
    roles: frozenset[Role]
    via: Literal["peer", "token", "certificate"]

    @property
    def role(self) -> str | None:
        """The roles as one audit field: "operator", "oncall,operator"; None without a role."""
        return ",".join(sorted(self.roles)) or None


@dataclass(frozen=True)
class Decision:
    """`authorize`'s answer. `why` is one sentence for the audit log and the refusal message."""

    allowed: bool
    break_glass: bool  # on-call ran an emergency playbook alone: review afterwards
    needs_approval: bool  # two-person rule: wait for a second, different operator
    why: str
    hint: str | None = None  # for a refusal: what the caller can do about it


def _allow(why: str, *, break_glass: bool = False, needs_approval: bool = False) -> Decision:
    return Decision(True, break_glass, needs_approval, why)


def _refuse(why: str, hint: str | None = None) -> Decision:
    return Decision(False, False, False, why, hint)


def may(caller: Caller, action: Action) -> Decision:
    """Does one of `caller`'s roles grant `action` at all (for RUN: some playbook)?"""
    if not caller.roles:
        return _refuse(f"{caller.user} has no role in the roles file")
    granted = [r for r in sorted(caller.roles) if action in GRANTS[r]]
    if granted:
        return _allow(f"{granted[0]} may {action}")
    return _refuse(f"{caller.user} ({caller.role}) may not {action}")


def authorize(
    caller: Caller,
    action: Action,
    *,
    playbook_emergency: bool = False,
    playbook_approval: str = "none",
    reason: str | None = None,
) -> Decision:
    """May `caller` do `action`? Pure: the playbook's flags and the reason are given for RUN.

    RUN: an operator runs any playbook (a `two_person` one waits for another operator's approval)
    unless they are also on call and take the break-glass path below, which they do only for an
    emergency `two_person` playbook with a reason. On-call alone runs emergency playbooks only,
    always with a non-empty reason, flagged `break_glass`; a `two_person` one then skips the wait.
    """
    coarse = may(caller, action)
    if not coarse.allowed or action is not Action.RUN:
        return coarse
    two_person = playbook_approval == "two_person"
    has_reason = bool(reason and reason.strip())
    oncall = Role.ONCALL in caller.roles
    break_glass = oncall and playbook_emergency and has_reason
    if Role.OPERATOR in caller.roles and not (two_person and break_glass):
        if two_person:
            return _allow(
                "operator may run it; two-person rule: a second operator must approve",
                needs_approval=True,
            )
        return _allow("operator may run any playbook")
    # on call (GRANTS gives RUN to no other role)
    if not playbook_emergency:
        return _refuse(
            f"{caller.user} ({caller.role}) may run emergency playbooks only; this one is not",
            hint="ask an operator to run it",
        )
    if not has_reason:
        return _refuse(
            "break-glass: on-call running an emergency playbook must give a --reason",
            hint="give --reason: it is recorded, and the run is flagged for review afterwards",
        )
    why = "break-glass: on-call runs an emergency playbook, flagged for review"
    if two_person:
        why += "; the two-person approval is skipped"
    return _allow(why, break_glass=True)


# -- the roles file ----------------------------------------------------------------------------

_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def _user(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a user name: lower-case letters, digits, '_', '.', '-', "
            "starting with a letter or '_', at most 32 characters"
        )
    return value


def _unique_users(values: tuple[str, ...]) -> tuple[str, ...]:
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise ValueError(f"listed more than once: {', '.join(dupes)}")
    return values


User = Annotated[str, AfterValidator(_user)]
Users = Annotated[tuple[User, ...], AfterValidator(_unique_users)]


def _cert_path(value: str) -> str:
    if not value or len(value) > 400 or any(not c.isprintable() for c in value):
        raise ValueError("not a file path")
    if value.startswith(("env:", "file:")):
        raise ValueError(
            "a client certificate is public: give its PEM file's path, not a secret reference"
        )
    return value


def _one_or_more(value: object) -> object:
    return (value,) if isinstance(value, str) else value


CertPath = Annotated[str, AfterValidator(_cert_path)]
CertPaths = Annotated[tuple[CertPath, ...], BeforeValidator(_one_or_more)]


class RolesFile(BaseModel):
    """The roles file as written; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    oncall: Users = ()
    operator: Users = ()
    auditor: Users = ()
    root_is: Role | None = None
    tokens: dict[User, SecretRef] = {}
    certificates: dict[User, CertPaths] = {}

    def roles_of(self, user: str) -> frozenset[Role]:
        return frozenset(r for r in Role if user in getattr(self, r.value))


def default_roles_path() -> Path:
    """`$CORDON_ROLES`, else `inventory/roles.yaml`."""
    return settings.current().roles


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"  # no such user: matches no entry of the roles file


class Policy:
    """The loaded roles file and its resolved tokens: turns a connection into a `Caller`."""

    def __init__(
        self,
        roles: RolesFile,
        tokens: Mapping[str, str],
        *,
        source: str,
        certificates: Mapping[str, str] | None = None,
        certificate_files: tuple[Path, ...] = (),
    ) -> None:
        self.roles = roles
        self.source = source
        self._tokens = dict(tokens)  # user -> token value; never logged, never repr'd
        self.certificates = dict(certificates or {})  # pin -> user (public)
        self.certificate_files = certificate_files  # what a TLS listener trusts

    def __repr__(self) -> str:
        return f"Policy(source={self.source!r}, tokens={sorted(self._tokens)})"

    @classmethod
    def load(cls, path: Path | None = None) -> Policy:
        """Read, validate and resolve a roles file; `ConfigError` lists every problem found."""
        path = path or default_roles_path()
        doc = yamlfile.load(path, what="roles")
        issues: list[Issue] = list(doc.issues)
        if doc.data is not None and not isinstance(doc.data, dict):
            issues.append(doc.issue((), "a roles file is a mapping: oncall, operator, auditor..."))
        issues += _unsafe_file(path)
        roles: RolesFile | None = None
        if isinstance(doc.data, dict):
            try:
                roles = RolesFile.model_validate(doc.data)
            except ValidationError as exc:
                issues += yamlfile.validation_issues(doc, exc)
        tokens: dict[str, str] = {}
        if roles is not None:
            for user, ref in roles.tokens.items():
                loc = ("tokens", user)
                if not roles.roles_of(user):
                    issues.append(doc.issue(loc, f"token for {user}, who has no role in this file"))
                    continue
                try:
                    value = resolve(ref, base_dir=path.parent, what=f"token of {user}")
                except SecretError as exc:
                    issues.append(doc.issue(loc, exc.message))
                    continue
                if len(value) < MIN_TOKEN_LENGTH:
                    issues.append(
                        doc.issue(
                            loc,
                            f"token of {user} is shorter than {MIN_TOKEN_LENGTH} characters: "
                            "too easy to guess (and too short to be scrubbed from logs safely)",
                        )
                    )
                    continue
                tokens[user] = value
        pins: dict[str, str] = {}
        files: list[Path] = []
        if roles is not None:
            issues += _certificates(roles, path, doc, pins, files)
        if roles is None or issues:
            raise _roles_error(issues or [Issue(str(path), "", "roles file is empty")])
        return cls(
            roles, tokens, source=str(path), certificates=pins, certificate_files=tuple(files)
        )

    def identify(self, uid: int, token: str | None = None) -> Caller:
        """The caller behind a connection from `uid`, or behind `token` if one was presented.

        A presented token that matches no one is refused (`AccessRefused`), never ignored.
        """
        if token is not None:
            user = self._match(token)
            if user is None:
                raise AccessRefused(
                    f"the bearer token presented (by uid {uid}) matches no operator",
                    hint=f"check the token, or its reference in {self.source}",
                )
            return Caller(user, uid, self.roles.roles_of(user), "token")
        user = user_name(uid)
        roles = self.roles.roles_of(user)
        if uid == 0 and self.roles.root_is is not None:
            roles |= {self.roles.root_is}
        return Caller(user, uid, roles, "peer")

    def identify_certificate(self, pin: str | None, token: str | None = None) -> Caller:
        """The caller behind a TLS connection whose client certificate has `pin` (the handshake
        proved the key). A certificate matching no one is refused; so is a bearer token sent
        with it that stands for another user (a token alone never identifies over TCP)."""
        user = self.certificates.get(pin) if pin is not None else None
        if user is None:
            raise AccessRefused(
                f"the client certificate {pin or '(none)'} matches no operator",
                hint=f"list its PEM file under `certificates:` in {self.source}",
            )
        if token is not None and self._match(token) != user:
            raise AccessRefused(
                f"the bearer token sent with {user}'s client certificate is not {user}'s",
                hint="over TCP the certificate says who you are: send no token, or your own",
            )
        return Caller(user, -1, self.roles.roles_of(user), "certificate")

    def _match(self, token: str) -> str | None:
        """Compare with every token in constant time per comparison; no early exit."""
        given = token.encode("utf-8", "surrogateescape")
        found = None
        for user, value in self._tokens.items():
            if hmac.compare_digest(given, value.encode("utf-8", "surrogateescape")):
                found = user
        return found


def _certificates(
    roles: RolesFile,
    path: Path,
    doc: yamlfile.YamlDocument,
    pins: dict[str, str],
    files: list[Path],
) -> list[Issue]:
    """Read the client certificates of `roles` (paths relative to the roles file): each one's
    pin into `pins` (pin -> user), its file into `files`; the problems found."""
    issues: list[Issue] = []
    for user, given in roles.certificates.items():
        for i, rel in enumerate(given):
            at: tuple[str | int, ...] = ("certificates", user, i)
            if not roles.roles_of(user):
                issues.append(doc.issue(at, f"certificate for {user}, who has no role"))
                continue
            file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
            from agent import mtls  # noqa: PLC0415 - x509: only for a file that lists certificates

            try:
                pin = mtls.certificate_pin(file, error=ConfigError)
            except ConfigError as exc:
                issues.append(doc.issue(at, exc.message))
                continue
            mode = _others_write(file)
            if mode is not None:  # whoever can write it puts their certificate there: user's
                issues.append(
                    doc.issue(
                        at,
                        f"{file} has mode {mode:04o}: writable by group or others, who could "
                        f"put their own certificate there and act as {user} (chmod 644 or "
                        "stricter)",
                    )
                )
                continue
            if pin in pins:
                issues.append(doc.issue(at, f"{file} ({pin}) is listed for {pins[pin]} already"))
                continue
            pins[pin] = user
            files.append(file)
    return issues


def _others_write(path: Path) -> int | None:
    """The mode of `path` when its group or others may write it, else None (nor when it cannot
    be read: whoever reads it reports that)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if mode & (stat.S_IWGRP | stat.S_IWOTH) else None


def _unsafe_file(path: Path) -> list[Issue]:
    """A roles file others can write lets them grant themselves a role: refuse it."""
    mode = _others_write(path)  # a file that cannot be read: yamlfile.load reported it
    if mode is not None:
        return [
            Issue(
                str(path),
                "",
                f"roles file has mode {mode:04o}: writable by group or others, "
                "who could grant themselves a role (chmod 644 or stricter)",
            )
        ]
    return []


def check_local_roles(path: Path, *, uid: int, state_dir: Path) -> None:
    """`--local` serves the API inside the caller's own process, so the caller picks the roles
    file (`--roles`, `$CORDON_ROLES`): a file they wrote would make them operator. For a caller
    other than root, the file must belong to root or to the owner of the state directory (the
    daemon's user), and nobody else may write it; anything else is `AccessRefused` (exit 13)."""
    if uid == 0:
        return
    try:
        st = path.stat()
    except OSError:
        return  # Policy.load reports the missing file
    trusted = {0}
    with contextlib.suppress(OSError):
        trusted.add(state_dir.stat().st_uid)
    if st.st_uid not in trusted or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        owners = " or ".join(sorted({user_name(u) for u in trusted}))
        raise AccessRefused(
            f"refused: --local with the roles file {path}, owned by {user_name(st.st_uid)} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): with --local, a user other than root "
            f"may only use a roles file owned by {owners} that nobody else can write",
            hint="use the daemon (cordon daemon), or the installation's roles file",
        )


def _roles_error(issues: list[Issue]) -> ConfigError:
    count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
    body = "\n".join(f"  {i}" for i in issues)
    return ConfigError(
        f"invalid roles file: {count}\n{body}",
        hint="fix the roles file (see agent/api/auth.py for its format) and restart the daemon",
    )
