"""Every setting Cordon takes from its environment: the `CORDON_*` variables and the default paths
derived from them, read into one frozen `Settings` and validated at load.

Owns the environment: nothing else in `agent/` reads `os.environ` for a setting (a test scans the
source for it). Secret references (`env:NAME` in an inventory or roles file) are secrets, not
settings: `agent.secrets` resolves them. Imports only the standard library and `agent.errors`.

    current() -> Settings       the settings of this process's environment (cached per environment)
    load(environ) -> Settings   the same from any mapping (tests)
    skip_pydantic_plugins()     the one write: pydantic's plugin search off unless set (cold start)

An empty variable counts as unset. A value that does not parse, or is out of range, raises the
error of its owner (`ConfigError`, exit 2; `LabError`, exit 9, for the twin's) naming the variable,
its value and the accepted range, before anything is done. Every setting below is read somewhere
(`readers`); a test fails for a setting validated here that nothing reads.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from agent.errors import ConfigError, CordonError, LabError

__all__ = ["SETTINGS", "Setting", "Settings", "current", "load"]

JOURNAL_NAME = "journal.sqlite"
HEALTH_NAME = "health.sqlite"
SOCKET_NAME = "cordon.sock"

Kind = Literal["path", "text", "url", "seconds", "mib", "node"]


@dataclass(frozen=True)
class Setting:
    """One environment variable: where it lands in `Settings`, its default, who reads it."""

    env: str  # the variable's name
    attr: str  # the `Settings` field it fills
    kind: Kind
    default: str  # the default, as documentation
    meaning: str
    readers: tuple[str, ...]  # the modules that read `Settings.<attr>`
    minimum: float = 0.0  # numbers: the lowest accepted value ...
    strict: bool = False  # ... and whether it is excluded (> instead of >=)
    error: type[CordonError] = ConfigError


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "CORDON_STATE_DIR",
        "state_dir",
        "path",
        ".state",
        "journal, job store, health store, the daemon's lock, state file and socket",
        (
            "agent.api",
            "agent.cli.options",
            "agent.cli.commands.daemon",
            "agent.cli.commands.resume",
            "agent.service.health",
            "agent.engine.journal",
        ),
    ),
    Setting(
        "CORDON_STATE_URL",
        "state_url",
        "url",
        "none: the SQLite files of the state directory",
        "the PostgreSQL database (postgresql://USER@HOST:PORT/DB or ...?host=/socket/dir, no "
        "password: peer, certificate or ~/.pgpass) holding the journal, health and job stores",
        ("agent.engine.journal", "agent.service.health", "agent.service.jobs"),
    ),
    Setting(
        "CORDON_NODE_ID",
        "node_id",
        "node",
        "HOSTNAME:PID",
        "this daemon's name among the daemons sharing CORDON_STATE_URL (active/standby lease)",
        ("agent.service.service",),
    ),
    Setting(
        "CORDON_FAILOVER_S",
        "failover_s",
        "seconds",
        "10",
        "active/standby on PostgreSQL: the most a standby waits to take over from a silent "
        "active daemon (lease 2/3 of it, renewed every 1/3)",
        ("agent.service.service",),
        minimum=0.3,
    ),
    Setting(
        "CORDON_LOG_DIR",
        "log_dir",
        "path",
        "./logs (under the working directory when used)",
        "the audit log directory (chain, seals, evidence)",
        ("agent.audit.pipeline",),
    ),
    Setting(
        "CORDON_INVENTORY",
        "inventory",
        "path",
        "inventory/hospi-grand-ouest.yaml",
        "the inventory when a command is given none",
        ("agent.inventory",),
    ),
    Setting(
        "CORDON_ROLES",
        "roles",
        "path",
        "inventory/roles.yaml",
        "the roles file (who may do what; bearer tokens as secret references)",
        ("agent.api.auth",),
    ),
    Setting(
        "CORDON_SOCKET",
        "socket",
        "path",
        "the state directory's cordon.sock",
        "the daemon socket the CLI talks to (its --socket)",
        ("agent.cli.options",),
    ),
    Setting(
        "CORDON_TOKEN",
        "token",
        "text",
        "none: the caller is identified by its OS user",
        "the CLI's bearer token (its --token); a secret, never shown",
        ("agent.cli.options",),
    ),
    Setting(
        "CORDON_VIEW_LISTEN",
        "view_listen",
        "text",
        "none: no view",
        "loopback HOST:PORT where the daemon serves the crisis cell's read-only view (no TLS)",
        ("agent.view.server",),
    ),
    Setting(
        "CORDON_AUDIT_SEAL_KEY",
        "audit_seal_key",
        "text",
        "none: seals are unsigned and anchor nothing",
        "secret reference (file:PATH, env:NAME) to the Ed25519 key signing the audit seals",
        ("agent.cli.commands.audit", "agent.audit.pipeline"),
    ),
    Setting(
        "CORDON_AUDIT_SEAL_PUBKEY",
        "audit_seal_pubkey",
        "text",
        "none: `audit verify` says the seals are not anchored",
        "the seal public key pinned for `audit verify` ('ed25519:<base64>' or file:PATH)",
        ("agent.cli.commands.audit",),
    ),
    Setting(
        "CORDON_STEP_PAUSE",
        "step_pause_s",
        "seconds",
        "0",
        "pause between device steps (drills on the twin, crash tests)",
        ("agent.run.executor",),
    ),
    Setting(
        "CORDON_DEADMAN_S",
        "deadman_s",
        "seconds",
        "30",
        "how long an on-device revert waits before restoring a lost device's fail-safe state",
        ("agent.run.executor",),
        strict=True,
    ),
    Setting(
        "CORDON_AUDIT_MIN_FREE_MB",
        "audit_min_free_mb",
        "mib",
        "64",
        "free space the audit log's disk must keep before anything is sent to a device",
        ("agent.run.executor",),
    ),
    Setting(
        "CORDON_STOP_WAIT_S",
        "stop_wait_s",
        "seconds",
        "120",
        "how long a rollback waits for the process driving the run to stop it",
        ("agent.run.executor",),
    ),
    Setting(
        "CORDON_VERIFY_OPEN_TIMEOUT_S",
        "verify_open_timeout_s",
        "seconds",
        "the twin verifier's OPEN_TIMEOUT_S (2 s)",
        "twin flow verifier: time a flow expected open gets to connect",
        ("agent.lab.flows",),
        strict=True,
        error=LabError,
    ),
    Setting(
        "CORDON_VERIFY_CLOSED_TIMEOUT_S",
        "verify_closed_timeout_s",
        "seconds",
        "the twin verifier's CLOSED_TIMEOUT_S (0.1 s)",
        "twin flow verifier: least time a flow expected closed is probed",
        ("agent.lab.flows",),
        strict=True,
        error=LabError,
    ),
    Setting(
        "CORDON_LAB_READY_S",
        "lab_ready_s",
        "seconds",
        "the twin's BOUND_S (30 s)",
        "how long `lab up` waits for the kernel to settle every link and flow",
        ("agent.lab.ready",),
        strict=True,
        error=LabError,
    ),
    Setting(
        "CORDON_TWIN_IOSXE_MINUTE_S",
        "twin_iosxe_minute_s",
        "seconds",
        "60 (IOS-XE's own minute)",
        "twin only: seconds in one minute of a cisco_iosxe twin's revert timer (tests shorten it)",
        ("agent.platforms.cisco_iosxe.twin",),
        strict=True,
        error=LabError,
    ),
    Setting(
        "CORDON_LAB_AOSCX_MINUTE_S",
        "lab_aoscx_minute_s",
        "seconds",
        "60 (AOS-CX's own minute)",
        "twin only: seconds in one minute of an aruba_aoscx twin's `checkpoint auto` timer",
        ("agent.platforms.aruba_aoscx.twin",),
        strict=True,
        error=LabError,
    ),
    Setting(
        "CORDON_LAB_STATE",
        "lab_state",
        "path",
        "/run/cordon-lab",
        "the twin's own journal (what `lab down` undoes)",
        ("agent.lab.state",),
        error=LabError,
    ),
    Setting(
        "CORDON_API_LISTEN",
        "api_listen",
        "text",
        "none: the Unix socket only",
        "IP:PORT where the daemon also serves its API over TCP, TLS 1.2+ with client "
        "certificates (the roles file's `certificates:`); needs CORDON_API_TLS_CERT and _KEY",
        ("agent.api.tcp",),
    ),
    Setting(
        "CORDON_API_TLS_CERT",
        "api_tls_cert",
        "path",
        "none",
        "the daemon's TLS certificate (PEM) for CORDON_API_LISTEN and a TLS view (refused "
        "when neither is set)",
        ("agent.api.tcp",),
    ),
    Setting(
        "CORDON_API_TLS_KEY",
        "api_tls_key",
        "text",
        "none",
        "file:PATH of that certificate's key (a file readable by the daemon's user only)",
        ("agent.api.tcp",),
    ),
    Setting(
        "CORDON_API_ADVERTISE",
        "api_advertise",
        "text",
        "https://<CORDON_API_LISTEN>",
        "the https://HOST:PORT other nodes' clients are sent to (recorded in cordon_nodes); "
        "needs CORDON_API_LISTEN",
        ("agent.api.tcp",),
    ),
    Setting(
        "CORDON_API_URL",
        "api_url",
        "text",
        "none: the daemon's Unix socket",
        "the CLI: https://HOST:PORT of a daemon's API over TCP (with CORDON_API_PIN)",
        ("agent.cli.session",),
    ),
    Setting(
        "CORDON_API_PIN",
        "api_pin",
        "text",
        "none",
        "the CLI: the pin (sha256:<hex>) of the daemon's certificate at CORDON_API_URL "
        "(refused without it)",
        ("agent.cli.session",),
    ),
    Setting(
        "CORDON_API_CLIENT_CERT",
        "api_client_cert",
        "path",
        "none",
        "the CLI: its client certificate (PEM) over TCP, and to follow a standby's redirect",
        ("agent.cli.session",),
    ),
    Setting(
        "CORDON_API_CLIENT_KEY",
        "api_client_key",
        "text",
        "none",
        "the CLI: file:PATH of its client certificate's key (readable by its owner only)",
        ("agent.cli.session",),
    ),
)


@dataclass(frozen=True)
class Settings:
    """The validated settings; `None` where the reader keeps its own default (documented above)."""

    state_dir: Path = Path(".state")
    state_url: str | None = None
    node_id: str | None = None
    failover_s: float = 10.0
    log_dir: Path | None = None
    inventory: Path = Path("inventory/hospi-grand-ouest.yaml")
    roles: Path = Path("inventory/roles.yaml")
    socket: Path | None = None
    token: str | None = field(default=None, repr=False)
    view_listen: str | None = None
    audit_seal_key: str | None = None
    audit_seal_pubkey: str | None = None
    step_pause_s: float = 0.0
    deadman_s: float = 30.0
    audit_min_free_mb: float = 64.0
    stop_wait_s: float = 120.0
    verify_open_timeout_s: float | None = None
    verify_closed_timeout_s: float | None = None
    lab_ready_s: float | None = None
    twin_iosxe_minute_s: float = 60.0
    lab_aoscx_minute_s: float = 60.0
    lab_state: Path = Path("/run/cordon-lab")
    api_listen: str | None = None
    api_tls_cert: Path | None = None
    api_tls_key: str | None = None
    api_advertise: str | None = None
    api_url: str | None = None
    api_pin: str | None = None
    api_client_cert: Path | None = None
    api_client_key: str | None = None

    @property
    def journal_path(self) -> Path:
        """The run journal: `<state_dir>/journal.sqlite`."""
        return self.state_dir / JOURNAL_NAME

    @property
    def health_path(self) -> Path:
        """The daemon's device health store: `<state_dir>/health.sqlite`."""
        return self.state_dir / HEALTH_NAME

    @property
    def socket_path(self) -> Path:
        """The daemon's default socket: `<state_dir>/cordon.sock`."""
        return self.state_dir / SOCKET_NAME


def _number(s: Setting, raw: str) -> float:
    unit = "number of seconds" if s.kind == "seconds" else "number of MiB"
    hint = f"set {s.env} to a {unit}, or unset it for the default ({s.default})"
    try:
        value = float(raw)
    except ValueError:
        raise s.error(f"{s.env}={raw!r} is not a {unit}", hint=hint) from None
    if not math.isfinite(value):
        raise s.error(f"{s.env}={raw!r} is not a {unit}", hint=hint)
    if s.strict and value <= s.minimum:
        raise s.error(f"{s.env} must be positive, got {raw}", hint=hint)
    if value < s.minimum:
        raise s.error(f"{s.env} must be {s.minimum:g} or more, got {raw}", hint=hint)
    return value


PG_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_URL_PARTS = re.compile(r"^(?P<scheme>[^:/?#]+)://(?P<netloc>[^/?#]*)(?P<path>[^?#]*)")
_PASSWORD_KEYS = ("password", "sslpassword")  # libpq's URI keywords that carry a secret


def is_state_url(where: object) -> bool:
    """Is `where` a PostgreSQL URL (postgresql:// or postgres://) rather than a path? Read
    from its scheme only: never raises, a malformed URL is still one (`state_url_problem`
    says what is wrong with it)."""
    if not isinstance(where, str):
        return False
    scheme = _SCHEME.match(where)
    return scheme is not None and scheme.group(1).lower() in PG_SCHEMES


def redact_url(url: str) -> str:
    """`url` as a message, an output or an error may show it: scheme, user, host, port and
    path; never its password (`user:password@` becomes `user@`) nor its query (where libpq
    options, `password=` among them, live). The one redaction of a state URL; never raises,
    even for a malformed URL."""
    parts = _URL_PARTS.match(url)
    if parts is None:  # no scheme://: nothing before an @ or after a ? is shown
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    userinfo, at, host = parts["netloc"].rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{parts['scheme']}://{user}{at}{host}{parts['path']}"


def state_url_problem(raw: str) -> str | None:
    """Why `raw` cannot be a state URL (not postgresql://, not a URL, a password in it), or
    None. The query is read as libpq reads it (percent-decoded keywords)."""
    try:
        parts = urlsplit(raw)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 host
        return f"not a valid URL ({exc})"
    if not is_state_url(raw):  # the stores' own test: no URL they would take for a path
        return "not a postgresql:// URL"
    if parts.password is not None or any(
        key.strip().lower() in _PASSWORD_KEYS for key, _value in query
    ):
        return (
            "it contains a password (user:PASSWORD@, password= or sslpassword=), and a secret "
            "is never a setting: authenticate by peer or certificate, or put the password in "
            "libpq's password file (PGPASSFILE, ~/.pgpass)"
        )
    return None


_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")


def node_id_problem(raw: str) -> str | None:
    """Why `raw` cannot be a node id, or None (letters, digits, `._:@-`, up to 100)."""
    if _NODE_ID.match(raw) is None:
        return (
            "a node id is 1 to 100 letters, digits or . _ : @ - (starting with a letter or digit)"
        )
    return None


def _node(s: Setting, raw: str) -> str:
    problem = node_id_problem(raw)
    if problem is not None:
        raise s.error(
            f"{s.env}={raw[:120]!r} cannot be used: {problem}",
            hint=f"set {s.env} to a name such as db1-cordon, or unset it for {s.default}",
        )
    return raw


def _url(s: Setting, raw: str) -> str:
    problem = state_url_problem(raw)
    if problem is not None:  # the value itself is not shown: it may hold a password
        raise s.error(
            f"{s.env} cannot be used: {problem}",
            hint=f"set {s.env} to postgresql://USER@HOST:PORT/DATABASE (or "
            f"postgresql:///DATABASE?host=/socket/dir), or unset it for {s.default}",
        )
    return raw


def load(environ: Mapping[str, str]) -> Settings:
    """Read and validate every setting from `environ`; raise on the first bad one."""
    values: dict[str, object] = {}
    for s in SETTINGS:
        raw = environ.get(s.env)
        if not raw:
            continue
        if s.kind == "path":
            values[s.attr] = Path(raw)
        elif s.kind == "text":
            values[s.attr] = raw
        elif s.kind == "url":
            values[s.attr] = _url(s, raw)
        elif s.kind == "node":
            values[s.attr] = _node(s, raw)
        else:
            values[s.attr] = _number(s, raw)
    return Settings(**values)  # type: ignore[arg-type]


_cache: dict[tuple[tuple[str, str], ...], Settings] = {}
_cache_lock = Lock()


def current() -> Settings:
    """The settings of this process's environment now (loaded once per distinct environment)."""
    key = tuple((s.env, os.environ.get(s.env, "")) for s in SETTINGS)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    loaded = load(os.environ)
    with _cache_lock:
        if len(_cache) > 64:  # tests change the environment often; keep the cache small
            _cache.clear()
        _cache[key] = loaded
    return loaded


def skip_pydantic_plugins() -> None:
    """Before the first pydantic model: pydantic's plugin search off (its own switch,
    `PYDANTIC_DISABLE_PLUGINS`, unless whoever runs `cordon` set it). The search reads the
    metadata of every installed distribution at the first model (~8 ms of each `cordon` start,
    #18); Cordon uses no plugin, and a plugin is a third party's hook into the validation of every
    inventory, playbook and API request. Called by `agent.cli.main`. Empty counts as unset, as
    for every setting here (pydantic itself would search with an empty value)."""
    if not os.environ.get("PYDANTIC_DISABLE_PLUGINS"):
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
