"""The audit trail: one structlog pipeline writing a hash-chained, sealed, scrubbed JSON-lines log.

Must not import the engine, drivers, daemon or CLI, nor netmiko, pysnmp, paramiko or APScheduler.

Public API (everything else is internal):

    configure(log_dir=None, *, console=None, syslog=None, seal_key=None) -> None   idempotent;
        default log dir: $CORDON_LOG_DIR, else ./logs; console on stderr only on a TTY; syslog
        "udp://h:p"/"tcp://h:p"; seal_key: secret reference to the Ed25519 key signing the seals
        (default $CORDON_AUDIT_SEAL_KEY; none: unsigned seals, which anchor nothing)
    get_logger(**initial_binds) -> FilteringBoundLogger   log.info("device.change", device=..., ...)
    bind(**ctx) -> context manager                         run_id, incident_id, actor, role, site...
    register_secret(value: str) -> None                    called by the secret resolver
    store_evidence(data: bytes | str) -> str               sha256 hex of the scrubbed stored copy
    seal(reason="demand") -> dict | None                   seal the chain head now
    close() -> None                                        seal and release (also at exit)
    verify(path: Path, *, public_key=None) -> Verification what `cordon audit verify` runs;
        public_key: the seal key pinned outside the log ($CORDON_AUDIT_SEAL_PUBKEY)
    verify_url(url, *, public_key=None) -> Verification   the same, of a PostgreSQL chain
    set_node(node, epoch) -> None                          who appends to a PostgreSQL chain, and
        the lease epoch it holds as the active node (the daemon's service sets it)
    release_epoch(epoch) -> None                           it no longer claims that epoch
    current_chain() -> str                                 where the chain is, for messages

When the state is on PostgreSQL (`CORDON_STATE_URL`), the chain, its seals and its evidence are
tables of that database, one chain for every node of the group (`agent.audit.pgchain`); the
log directory keeps a copy of the evidence and any record the group's chain refused.

A log call raises `AuditError` when the trail cannot be written (disk full, permissions): the
caller decides, and a run that cannot be audited should stop. Every write (log lines, evidence)
goes through `redact.scrub`; nothing else in the project writes into the log directory.

On disk, under the log directory:
    audit-YYYY-MM-DD.jsonl   the chain, one file per UTC day, linked across files
    seals.jsonl              seals of the chain head (file, seq, count, hash, ts, reason, host,
                             pid; key, sig: Ed25519 signature when a seal key is configured);
                             the first record of a chain is sealed at once
    .audit.lock              the flock every writer takes to append
    evidence/sha256/<hex>    scrubbed evidence blobs, read-only, named by their sha256

Record schema (one JSON object per line, `audit-YYYY-MM-DD.jsonl`, UTC days):
    ts           UTC ISO-8601 with "+00:00", stamped under the chain lock (monotonic with seq)
    event        event name, from the vocabulary (`agent.events`)
    level        info | warning | error ...
    run_id, incident_id, actor, role, site, device, action       null when not applicable
    commands     list of commands sent (scrubbed), outcome (ok | failed | refused | ...),
    duration_s   seconds (float) or null
    host, pid    the writing process
    seq, prev, hash      the chain: hash = sha256(canonical JSON of the record without "hash")
    file         the day file the record was written to (hashed: a renamed file shows)
    <what>_sha256        reference to evidence/sha256/<hex> (config_before_sha256, output_sha256...)
    any other keyword argument, scrubbed; keys named like secrets are "[REDACTED]".

Event vocabulary: `agent.events.VOCABULARY`, every event name with its meaning, as data. A test
fails when code logs a name missing there, or the report reads one that nothing logs.
"""

from __future__ import annotations

from agent.audit.pipeline import (
    bind,
    close,
    configure,
    current_chain,
    current_log_dir,
    get_logger,
    release_epoch,
    seal,
    set_node,
    store_evidence,
)
from agent.audit.redact import register_secret
from agent.audit.verify import Verification, verify, verify_url

__all__ = [
    "Verification",
    "bind",
    "close",
    "configure",
    "current_chain",
    "current_log_dir",
    "get_logger",
    "register_secret",
    "release_epoch",
    "seal",
    "set_node",
    "store_evidence",
    "verify",
    "verify_url",
]
