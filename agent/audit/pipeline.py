"""The structlog pipeline, configured once: context merge, normalisation, redaction, chain sink.

Imports structlog, the standard library, `agent.settings` and `agent.audit` modules (and
`agent.secrets`, lazily, to resolve the seal signing key); never the engine, the daemon,
a device library or APScheduler. All of the audit trail's process-wide state lives here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from agent import settings
from agent.audit import evidence, redact
from agent.audit.chain import ChainWriter
from agent.audit.pgchain import PgChainWriter, is_url
from agent.audit.seals import ENV_SEAL_KEY, Sealer, SyslogTarget, load_private_key
from agent.audit.source import ChainSource
from agent.errors import AuditError

__all__ = [
    "EVENT_FIELDS",
    "appending",
    "bind",
    "close",
    "configure",
    "current_chain",
    "current_log_dir",
    "default_log_dir",
    "get_logger",
    "release_epoch",
    "seal",
    "seal_signer",
    "set_node",
    "store_evidence",
]

ENV_LOG_DIR = "CORDON_LOG_DIR"
# Present in every record (null when not applicable), besides event, level, ts, seq, prev, hash.
EVENT_FIELDS = (
    "run_id",
    "incident_id",
    "actor",
    "role",
    "site",
    "device",
    "action",
    "commands",
    "outcome",
    "duration_s",
)
_HOST = socket.gethostname()
_pid = os.getpid()


def _after_fork() -> None:
    global _pid  # noqa: PLW0603
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)
_HIDDEN_ON_CONSOLE = frozenset({"prev", "hash", "host", "pid", "level"})


@dataclass
class _State:
    key: tuple[Any, ...]
    log_dir: Path
    writer: ChainWriter | PgChainWriter
    sealer: Sealer
    console: bool
    refused: ChainWriter | None = None  # PostgreSQL: where refused records are kept (local)


@dataclass
class _Node:
    """Who appends to a PostgreSQL chain: this node's id, and the lease epoch it holds as the
    active node (None: it claims none). Set by the daemon's service (`set_node`)."""

    node: str | None = None
    epoch: int | None = None

    def who(self) -> tuple[str, int | None]:
        node = self.node or settings.current().node_id or f"{_HOST}:{_pid}"
        return node, self.epoch


_state: _State | None = None
_node = _Node()
_installed = False
_config_lock = threading.RLock()


def default_log_dir() -> Path:
    """`$CORDON_LOG_DIR` if set, else `logs/` under the current directory."""
    return settings.current().log_dir or Path.cwd() / "logs"


# -- processors (event_dict -> event_dict; only the sink writes) ------------------------------


def _normalize(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for name in EVENT_FIELDS:
        event.setdefault(name, None)
    event["host"] = _HOST
    event["pid"] = _pid
    return event


def _redact(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Mask values under secret-named keys; the chain writer then scrubs every string."""
    return redact.redact_keys(event)


def _sink(_logger: WrappedLogger, _method: str, event: EventDict) -> str:
    state = _current()
    try:
        record = state.writer.append(event)
    except AuditError as exc:
        if isinstance(state.writer, PgChainWriter):
            _keep_refused(state, event, exc)
        raise
    state.sealer.note_append()
    if record["seq"] == 1 and isinstance(state.writer, PgChainWriter):
        # the chain's first record is sealed at once; `note_append` sees it by the writer's
        # last seq, which a batch (group commit) may have taken past 1 already
        state.sealer.seal("first")
    if state.console:
        _render(record)
    return ""


def _keep_refused(state: _State, event: EventDict, exc: AuditError) -> None:
    """A record the group's chain did not take (this node no longer holds the epoch it wrote
    with: `AuditFenced`; or the database cannot be written) is not lost: it goes to this
    node's local log directory, with why (`refused`). The caller still gets the error."""
    if state.refused is None:
        state.refused = ChainWriter(state.log_dir)
    node, epoch = _node.who()
    with contextlib.suppress(AuditError):
        state.refused.append(
            {**event, "writer": node, "writer_epoch": epoch, "refused": exc.message}
        )
        Sealer(state.refused, signer=state.sealer.signer, interval=0).seal("refused")


_console_renderer = structlog.dev.ConsoleRenderer(timestamp_key="ts", pad_event_to=24)


def _render(record: dict[str, Any]) -> None:
    view = {k: v for k, v in record.items() if v is not None and k not in _HIDDEN_ON_CONSOLE}
    line = _console_renderer(None, str(record.get("level", "info")), view)
    sys.stderr.write(f"{line}\n")


def _install() -> None:
    """Configure structlog once for the whole process (processors never change afterwards)."""
    global _installed  # noqa: PLW0603
    with _config_lock:
        if _installed:
            return
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                _normalize,
                _redact,
                _sink,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            context_class=dict,
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=True,
        )
        atexit.register(_close_at_exit)
        _installed = True


# -- state ------------------------------------------------------------------------------------


def _syslog_failed(exc: AuditError) -> None:
    get_logger().error("audit.syslog_failed", outcome="failed", error=exc.message)


def configure(
    log_dir: Path | None = None,
    *,
    console: bool | None = None,
    syslog: str | None = None,
    seal_interval: float = 60.0,
    seal_every: int = 10_000,
    seal_key: str | None = None,
    chain_url: str | None = None,
) -> None:
    """Direct the audit trail to `log_dir` (default: `default_log_dir()`); idempotent.

    `console`: also render events readably on stderr (default: only when stderr is a TTY).
    `syslog`: `udp://host:port` or `tcp://host:port` receiving a copy of every seal (RFC 5424).
    `seal_key`: secret reference (`file:PATH`, `env:NAME`) to the Ed25519 private key that signs
    every seal (default: `$CORDON_AUDIT_SEAL_KEY`; none: seals are unsigned, i.e. unanchored).
    `chain_url`: a PostgreSQL URL: the chain (records, seals, evidence) lives there, shared by
    every node of the group (`agent.audit.pgchain`); default: without `log_dir`,
    `$CORDON_STATE_URL` when it is one; else the files of the log directory. The log directory
    still holds a local copy of the evidence and the records the group's chain refused.
    Calling again with other arguments seals and closes the previous log first.
    """
    global _state  # noqa: PLW0603
    with _config_lock:
        _install()
        if chain_url is None:  # the process's own trail follows the state; a drill's does not
            chain_url = settings.current().state_url if log_dir is None else None
        target = (log_dir or default_log_dir()).absolute()
        want_console = sys.stderr.isatty() if console is None else console
        key_ref = seal_key if seal_key is not None else settings.current().audit_seal_key
        url = chain_url
        url = url if url and is_url(url) else None
        key = (target, want_console, syslog, seal_interval, seal_every, key_ref, url)
        if _state is not None and _state.key == key:
            return
        syslog_target = SyslogTarget.parse(syslog) if syslog else None
        signer = seal_signer(key_ref) if key_ref else None
        if _state is not None:
            _close(_state)
        writer: ChainWriter | PgChainWriter = (
            ChainWriter(target) if url is None else PgChainWriter(url, who=_node.who)
        )
        sealer = Sealer(
            writer,
            syslog=syslog_target,
            signer=signer,
            interval=seal_interval,
            every=seal_every,
            on_error=_syslog_failed,
        )
        _state = _State(key, target, writer, sealer, want_console)


def seal_signer(ref: str) -> Ed25519PrivateKey:
    """The seal signing key behind a secret reference (its text is registered with the scrubber)."""
    from agent import secrets  # noqa: PLC0415 - agent.secrets imports agent.audit.redact

    what = f"audit seal key (${ENV_SEAL_KEY})"
    return load_private_key(secrets.resolve(ref, base_dir=Path.cwd(), what=what), what=what)


def _current() -> _State:
    state = _state
    if state is None:
        configure()
        state = _state
        assert state is not None
    return state


def _close(state: _State) -> None:
    try:
        if state.writer.appended:
            state.sealer.close()
    finally:
        state.writer.close()
        if state.refused is not None:
            with contextlib.suppress(AuditError):
                Sealer(state.refused, signer=state.sealer.signer, interval=0).seal("close")
            state.refused.close()


def close() -> None:
    """Seal what this process appended, stop the seal timer and release the files."""
    global _state
    with _config_lock:
        state, _state = _state, None
    if state is not None:
        _close(state)


def _close_at_exit() -> None:
    """`close` as the process exits: an audit store gone by then (a PostgreSQL server stopped
    first) is said in one line on stderr, not as a traceback; the records appended before are
    in the chain, after its last seal."""
    try:
        close()
    except AuditError as exc:
        why = " ".join(exc.message.split())  # one line: libpq's messages run over several
        sys.stderr.write(
            f"cordon: the audit chain's closing seal was not written: {why}; the "
            "records appended before it are in the chain, unsealed until the next seal "
            "(`cordon audit verify` shows them)\n"
        )


def seal(reason: str = "demand") -> dict[str, Any] | None:
    """Seal the chain head now; returns the seal written, or None if it was already sealed."""
    return _current().sealer.seal(reason)


def set_node(node: str | None, epoch: int | None) -> None:
    """Who this process appends as to a PostgreSQL chain: `node` (None: `$CORDON_NODE_ID`, else
    HOST:PID) and the lease epoch it holds as the active node (None: it claims none, e.g. a
    standby, or a node that knows it stepped down). While it claims an epoch, an append is
    refused once another node took the lease (`AuditFenced`). No effect on a file chain."""
    _node.node, _node.epoch = node, epoch


def release_epoch(epoch: int) -> None:
    """This node no longer claims `epoch` (it stepped down from it); no effect if it claims
    another one by now."""
    with _config_lock:
        if _node.epoch == epoch:
            _node.epoch = None


@contextmanager
def appending() -> Iterator[None]:
    """The records this thread logs in the block go into a file chain back to back: its locks
    (the thread lock, the directory's `flock`) taken once for the block, not once per record
    (#18: a verify step's 16 `flow.checked` records each queued for them behind the other
    sites' records); each is still appended as one record of its own (seq, prev, hash), in
    order, as it is logged. Other threads and processes append after the block. A PostgreSQL
    chain: as without it."""
    writer = _current().writer
    if not isinstance(writer, ChainWriter):
        yield
        return
    with writer.locked():
        yield


def current_chain() -> str:
    """Where the chain is: the PostgreSQL URL (redacted) and table, or the log directory."""
    writer = _current().writer
    return writer.where if isinstance(writer, PgChainWriter) else str(writer.log_dir)


def current_log_dir() -> Path:
    """The directory the audit trail writes to (configuring the default one if needed)."""
    return _current().log_dir


def current_source() -> ChainSource:
    """The chain this process's trail writes to, to read it back (the report): the group's
    chain in PostgreSQL, or the log directory's files (configuring the default if needed)."""
    state = _current()
    if isinstance(state.writer, PgChainWriter):
        return ChainSource(url=state.writer.url)
    return ChainSource(log_dir=state.log_dir)


def store_evidence(data: bytes | str) -> str:
    """Store scrubbed evidence (a config snapshot, device output); return its sha256 hex.

    Reference it from an event in a field named `<what>_sha256` so `audit verify` checks it.
    On a PostgreSQL chain it is stored there too (what the verifier checks there), and kept in
    the local log directory, where this node's gates read it.
    """
    state = _current()
    digest = evidence.store(data, log_dir=state.log_dir)
    if isinstance(state.writer, PgChainWriter):
        state.writer.store_evidence(data)
    return digest


# -- loggers and context ----------------------------------------------------------------------


def get_logger(**initial_binds: Any) -> FilteringBoundLogger:
    """A structlog logger whose events land in the audit chain: `log.info("step.started", ...)`."""
    _install()
    return cast(FilteringBoundLogger, structlog.get_logger().bind(**initial_binds))


@contextmanager
def bind(**context: Any) -> Iterator[None]:
    """Bind fields (run_id, incident_id, actor, role, site, ...) to every event in this context.

    Context variables do not flow into threads started inside the block: pass fields to
    `get_logger(**binds)` there, or run the thread with `contextvars.copy_context().run`.
    """
    with structlog.contextvars.bound_contextvars(**context):
        yield
