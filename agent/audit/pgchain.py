"""The group's one audit chain in PostgreSQL, when the state is there (`CORDON_STATE_URL`).

Several daemons sharing one state database (active/standby, `agent.engine.lease`) and every
`--local` command on it append to ONE chain, so a failover leaves one history, not one file
chain per node. Imports the standard library, psycopg (only when used), `agent.settings`,
`agent.errors` and `agent.audit.chain`; never the engine (the lease table is read by name).

Durability as in the files: an append commits asynchronously (visible to every node at once; a
crash of the server itself may lose the last fraction of a second, a consistent tail, never a
record in the middle), a seal commits synchronously and so flushes every record before it.
Group commit: records appended by several threads of one process at once are written in one
transaction (one head-row lock, one multi-row insert, still each chained to the one before
it); each caller returns once that transaction committed, as for a lone append, and a batch
that fails (fenced, or not written) fails for every record of it, none half-written.

The server ends an append's session that sits idle in its transaction for more than a third
of the failover bound (at least 2 s): a writer frozen mid-append does not hold the head row, and
the whole group's trail, for longer. A transaction whose connection was lost (that, a server
restart) is run again on a new one, up to 3 times; if the loss came at the commit, the writer
first reads whether its record landed, so nothing is written twice.

Tables (created on first use, schema version in `cordon_schema`, store `audit`):
    cordon_audit           seq (primary key), line: the record exactly as a file line would be
                           (canonical JSON, `hash` last), so the file verifier's checks apply
    cordon_audit_head      one row: the chain head (seq, hash); every append locks it FOR
                           UPDATE, so appends from every node are serialized and each chains
                           to the one before it
    cordon_audit_seals     signed seals of the head (the same seals as `seals.jsonl`)
    cordon_audit_evidence  scrubbed evidence blobs by sha256 (also kept in the local log dir)
A trigger refuses UPDATE, DELETE and TRUNCATE on the records, seals and evidence (not on the head
row, which moves): it stops a mistaken statement and any application path, not the tables'
owner or a superuser, who can drop it. Against those: the hash chain, the head row and the
signed seals (`agent.audit.verify.verify_url`), and seal copies sent off the machine.

A record adds to the file chain's fields (seq, prev, ts, file = "cordon_audit", hash):
    writer        the node that appended it (`CORDON_NODE_ID`, else HOST:PID)
    writer_epoch  the lease epoch the writer held as the active node, or null (a standby, a
                  `--local` command, a node that knows it stepped down)
An append that claims an epoch is refused (`AuditFenced`) unless the lease row (`cordon_lease`)
still names this writer with this epoch, read under the head lock: a record of epoch N never
follows one of epoch N+1, and a deposed leader that has not yet noticed cannot extend the chain
(what it tried to record is kept in its local log directory, see `agent.audit.pipeline`).
`ts` is the database's clock read under the head lock: monotonic with seq across nodes (the
records of one batch share it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

from agent import settings
from agent.audit import redact
from agent.audit.chain import GENESIS, Head, canonical, finish, keep_aside
from agent.errors import AuditError

__all__ = [
    "PG_CHAIN_FIELDS",
    "TABLE",
    "AuditFenced",
    "PgChainWriter",
    "PgSnapshot",
    "is_url",
    "read_records",
    "reading",
    "redact_url",
    "snapshot",
]

T = TypeVar("T")
TABLE = "cordon_audit"
PG_CHAIN_FIELDS = ("seq", "prev", "ts", "file", "writer", "writer_epoch", "hash")
SCHEMA_VERSION = 1
_STORE = "audit"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cordon_audit (seq BIGINT PRIMARY KEY, line TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cordon_audit_head "
    "(name TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    f"INSERT INTO cordon_audit_head VALUES ('head', 0, '{GENESIS}') ON CONFLICT DO NOTHING",  # noqa: S608 - a constant
    "CREATE TABLE IF NOT EXISTS cordon_audit_seals "
    "(id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, line TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cordon_audit_evidence "
    "(sha256 TEXT PRIMARY KEY, data BYTEA NOT NULL)",
    "CREATE OR REPLACE FUNCTION cordon_audit_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
    "'the Cordon audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$",
    *(
        stmt
        for table in ("cordon_audit", "cordon_audit_seals", "cordon_audit_evidence")
        for stmt in (
            f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION cordon_audit_append_only()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION cordon_audit_append_only()",
        )
    ),
)


ATTEMPTS = 3  # tries of one transaction whose connection was lost on the way
MAX_BATCH = 1000  # records appended in one transaction at most (group commit)
_EVIDENCE_BATCH = 32  # evidence blobs fetched at a time by the verifier


def idle_in_append_s() -> float:
    """How long an append's transaction may sit idle before the server ends it: a third of the
    failover bound (`CORDON_FAILOVER_S`), at least 2 s."""
    return max(2.0, settings.current().failover_s / 3)


class AuditFenced(AuditError):
    """An append claiming a lease epoch this node no longer holds: refused, nothing written."""


def is_url(where: object) -> bool:
    """Is `where` a PostgreSQL URL (rather than a log directory)? Never raises."""
    return settings.is_state_url(where)


def redact_url(url: str) -> str:
    """`url` without its password nor its query, for messages (`settings.redact_url`)."""
    return settings.redact_url(url)


def _lock_key(name: str) -> int:
    """The advisory lock key the state stores use for `name` (`agent.engine.store`)."""
    return int.from_bytes(hashlib.sha256(f"cordon:{name}".encode()).digest()[:8], signed=True)


def _unreachable(url: str, exc: BaseException) -> AuditError:
    return AuditError(
        f"cannot write the audit trail to PostgreSQL at {redact_url(url)}: "
        f"{type(exc).__name__}: {str(exc).strip()}",
        hint="Cordon sends nothing to a device while its audit trail cannot be written: "
        "check that the PostgreSQL server is up and reachable (CORDON_STATE_URL), then resume",
    )


def connect(url: str) -> Any:
    """A connection to the state database (autocommit; transactions explicit), the audit
    tables created or checked. `AuditError` when the server cannot be reached."""
    import psycopg  # noqa: PLC0415 - only with a PostgreSQL state

    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        # a writer frozen inside an append (SIGSTOP, a VM paused) must not hold the head row,
        # and with it every node's audit trail, for longer than this: the server ends its session
        conn.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
            (str(int(idle_in_append_s() * 1000)),),
        )
        # as the file chain: a record is visible to every node at its commit and written to
        # disk with the next seal (which commits synchronously), not each on its own
        conn.execute("SET synchronous_commit TO off")
    except psycopg.Error as exc:
        raise _unreachable(url, exc) from None
    try:
        _migrate(conn, url)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: Any, url: str) -> None:
    import psycopg  # noqa: PLC0415

    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("schema"),))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS cordon_schema "
                "(store TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM cordon_schema WHERE store = %s", (_STORE,)
            ).fetchone()
            found = int(row[0]) if row is not None else 0
            if found > SCHEMA_VERSION:
                raise AuditError(
                    f"the audit chain at {redact_url(url)} was written by a newer Cordon "
                    f"(schema version {found}; this release reads up to {SCHEMA_VERSION}): "
                    "nothing was changed",
                    hint="use that release (or a newer one) with this database",
                )
            if found < SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO cordon_schema VALUES (%s, %s) ON CONFLICT (store) "
                    "DO UPDATE SET version = excluded.version",
                    (_STORE, SCHEMA_VERSION),
                )
    except psycopg.Error as exc:
        raise _unreachable(url, exc) from None


@dataclass
class _Pending:
    """A record waiting for its batch: its fields, who appends it, and then what came of it."""

    base: dict[str, Any]
    node: str
    epoch: int | None
    record: dict[str, Any] | None = None
    error: AuditError | None = None
    done: bool = False


class PgChainWriter:
    """Appends records to the group's chain in PostgreSQL; one connection per process, used by
    one thread at a time; records appended by several threads at once are written together,
    in one transaction (group commit, see `append`).

    `who()`: this node's id and the lease epoch it holds as the active node (None: it claims
    none). A lost connection is reopened at the next append; an append that cannot be written
    raises `AuditError` (the caller stops sending, as for a full log disk)."""

    def __init__(self, url: str, *, who: Callable[[], tuple[str, int | None]]) -> None:
        self.url = url
        self.where = f"{redact_url(url)} ({TABLE})"
        self.who = who
        self._lock = threading.Lock()  # the connection: one transaction at a time
        self._queue_lock = threading.Lock()  # records waiting for the next batch
        self._queue: list[_Pending] = []
        self._conn: Any = None
        self._pid = -1
        self.appended = 0
        self.batches = 0  # transactions that appended records (appended / batches: batch size)
        self.last_seq = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))

    # -- the connection ------------------------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid() or self._conn.closed:
            self._conn, self._pid = connect(self.url), os.getpid()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # already broken: nothing more to do
                conn.close()

    def _transact(
        self, body: Callable[[Any], T], landed: Callable[[Any, T], bool] | None = None
    ) -> T:
        """`body(conn)` in one transaction on this process's connection. A connection lost on
        the way (a server restart, a session the server ended because this process sat idle in
        it: frozen, or starved of CPU) is replaced and `body` run again, up to `ATTEMPTS`
        times; if the loss came after `body` finished, at the commit, `landed(conn, result)`
        on the new connection says whether that commit happened after all (then it stands:
        nothing is written twice). Other database errors are not retried. `AuditError` when
        it cannot be written."""
        with self._lock:
            return self._transact_locked(body, landed)

    def _transact_locked(
        self, body: Callable[[Any], T], landed: Callable[[Any, T], bool] | None = None
    ) -> T:
        """`_transact`, the caller holding `_lock`."""
        import psycopg  # noqa: PLC0415

        for attempt in range(1, ATTEMPTS + 1):
            finished: list[T] = []
            conn: Any = None
            try:
                conn = self._connection()
                with conn.transaction():
                    finished.append(body(conn))
                return finished[0]
            except psycopg.Error as exc:
                # the connection is gone (the idle timeout's error is an InternalError)
                lost = isinstance(exc, psycopg.OperationalError) or (
                    conn is not None and (conn.closed or conn.broken)
                )
                self._drop()
                if not lost or attempt == ATTEMPTS:
                    raise _unreachable(self.url, exc) from None
                if finished and landed is not None and landed(self._connection(), finished[0]):
                    return finished[0]
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    @staticmethod
    def _head(conn: Any) -> Head:
        row = conn.execute(
            "SELECT seq, hash FROM cordon_audit_head WHERE name = 'head' FOR UPDATE"
        ).fetchone()
        return Head(TABLE, int(row[0]), str(row[1]))

    # -- append --------------------------------------------------------------------------------

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record made of `fields` plus the chain fields; return the record written,
        once its transaction committed. `AuditFenced` if it claims an epoch this node no longer
        holds; `AuditError` if the database cannot be written.

        Group commit: the records that this process's threads append while a transaction is
        under way wait for it, then the first of them to get the connection writes them all in
        ONE transaction (one head-row lock, one multi-row insert); each returns when that
        transaction committed, as a lone append does. A batch is all or nothing: if any of it
        is refused (a fenced epoch) or cannot be written, nothing of it is, and every caller
        gets the error."""
        item = _Pending(keep_aside(fields, PG_CHAIN_FIELDS), *self.who())
        with self._queue_lock:
            self._queue.append(item)
        with self._lock:
            while not item.done:  # an earlier batch may have taken it meanwhile
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._write_batch(batch)
        if item.error is not None:  # each caller its own exception object (own traceback)
            raise type(item.error)(item.error.message, hint=item.error.hint) from None
        assert item.record is not None
        return item.record

    def _write_batch(self, batch: list[_Pending]) -> None:
        """Write `batch` in one transaction (the caller holds `_lock`); mark each item done,
        with its record or, for all of them, the error."""

        def write(conn: Any) -> tuple[list[dict[str, Any]], str]:
            # few round trips: each costs a context switch or two
            # few round trips: each costs a context switch or two
            seq, head_hash, now = conn.execute(
                "SELECT seq, hash, clock_timestamp() FROM cordon_audit_head "
                "WHERE name = 'head' FOR UPDATE"
            ).fetchone()
            for node, epoch in dict.fromkeys((i.node, i.epoch) for i in batch):
                if epoch is not None:  # read under the head lock
                    _check_lease(conn, node, epoch)
            ts = now.astimezone(UTC).isoformat(timespec="microseconds")
            records: list[dict[str, Any]] = []
            lines: list[str] = []
            prev, seq = str(head_hash), int(seq)
            for item in batch:
                seq += 1
                record = dict(item.base)
                record["seq"] = seq
                record["prev"] = prev
                record["ts"] = ts
                record["file"] = TABLE
                record["writer"] = item.node
                record["writer_epoch"] = item.epoch
                line, prev = finish(record, PG_CHAIN_FIELDS[:-1])
                record["hash"] = prev
                records.append(record)
                lines.append(line.decode("utf-8"))
            conn.execute(
                "WITH added AS (INSERT INTO cordon_audit (seq, line) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[])) "
                "UPDATE cordon_audit_head SET seq = %s, hash = %s WHERE name = 'head'",
                ([r["seq"] for r in records], lines, seq, prev),
            )
            return records, prev

        def landed(conn: Any, written: tuple[list[dict[str, Any]], str]) -> bool:
            row = conn.execute(
                "SELECT line FROM cordon_audit WHERE seq = %s", (written[0][-1]["seq"],)
            ).fetchone()
            return row is not None and str(row[0]).endswith(f'"hash":"{written[1]}"}}')

        try:
            records, _ = self._transact_locked(write, landed)
        except AuditError as exc:
            for item in batch:
                item.error, item.done = exc, True
            return
        except BaseException as exc:  # not an AuditError: still, no caller waits forever
            error = AuditError(
                f"audit records not written to {self.where}: {type(exc).__name__}: {exc}"
            )
            for item in batch:
                item.error, item.done = error, True
            raise
        for item, record in zip(batch, records, strict=True):
            item.record, item.done = record, True
        self.appended += len(records)
        self.batches += 1
        self.last_seq = records[-1]["seq"]

    # -- seals ---------------------------------------------------------------------------------

    def seal_with(
        self, build: Callable[[Head, dict[str, Any] | None], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Under the head lock: `build(head, last seal)` makes the seal (None: nothing to
        seal), which is stored in `cordon_audit_seals` in the same transaction."""

        def write(conn: Any) -> dict[str, Any] | None:
            conn.execute("SET LOCAL synchronous_commit TO on")  # the records before it too
            head = self._head(conn)
            row = conn.execute(
                "SELECT line FROM cordon_audit_seals ORDER BY id DESC LIMIT 1"
            ).fetchone()
            seal = build(head, _json_object(row[0]) if row is not None else None)
            if seal is not None:
                conn.execute(
                    "INSERT INTO cordon_audit_seals (line) VALUES (%s)",
                    (canonical(seal).decode("utf-8"),),
                )
            return seal

        # run again after a lost connection, it finds the head sealed (None) or seals it
        return self._transact(write)

    # -- evidence ------------------------------------------------------------------------------

    def store_evidence(self, data: bytes | str) -> str:
        """Store scrubbed evidence once; its sha256 (hex), as `evidence.store` does in files."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        clean = redact.scrub_bytes(raw)
        digest = hashlib.sha256(clean).hexdigest()
        self._transact(
            lambda conn: conn.execute(
                "INSERT INTO cordon_audit_evidence (sha256, data) VALUES (%s, %s) "
                "ON CONFLICT (sha256) DO NOTHING",
                (digest, clean),
            )
        )
        return digest

    def sync(self) -> None:
        """Nothing to flush: every append is a committed transaction."""

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _forget_after_fork(self) -> None:
        self._lock, self._queue_lock = threading.Lock(), threading.Lock()
        self._queue = []  # the parent's waiting threads are not in this process
        self._conn, self._pid = None, -1  # the parent's connection is not ours to use


def _check_lease(conn: Any, node: str, epoch: int) -> None:
    """Does the lease row still name `node` with `epoch`? Else `AuditFenced`."""
    row = conn.execute("SELECT holder, epoch FROM cordon_lease WHERE name = 'active'").fetchone()
    if row is not None and (str(row[0]), int(row[1])) == (node, epoch):
        return
    now = "nobody" if row is None else f"{row[0]} with epoch {row[1]}"
    raise AuditFenced(
        f"audit record refused: node {node} wrote as the active node with epoch "
        f"{epoch}, but the lease is held by {now}: a deposed node does not extend the "
        "group's audit chain",
        hint="this node steps down and sends nothing more; the active node continues",
    )


def _reset_after_fork(ref: weakref.ref[PgChainWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._forget_after_fork()


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- reading (the verifier, the report, the tests) ----------------------------------------------


class PgSnapshot:
    """The chain as one consistent read (one REPEATABLE READ transaction): rows (seq column,
    line), seals (id, line), the head row; the evidence is read by sha256 when asked, in the
    same transaction, never the whole table: `check_evidence` streams the blobs the verifier
    needs (each hashed here, then dropped), `blob` reads one for a report section. Valid
    inside `reading`; asked for a blob after it, `AuditError`."""

    def __init__(
        self,
        where: str,
        rows: list[tuple[int, str]],
        seals: list[tuple[int, str]],
        head: Head | None,
        conn: Any = None,
        url: str = "",
    ) -> None:
        self.where = where
        self.rows = rows
        self.seals = seals
        self.head = head
        self._conn = conn
        self._url = url
        self._problems: dict[str, str | None] = {}

    def close(self) -> None:
        self._conn = None

    def _open(self) -> Any:
        if self._conn is None:
            raise AuditError(
                f"the evidence of {self.where} is read inside its snapshot only (a bug: "
                "`pgchain.reading` had ended)"
            )
        return self._conn

    def evidence_data(self, digest: str) -> bytes | None:
        """The blob stored under `digest` as the snapshot holds it (not checked), or None."""
        import psycopg  # noqa: PLC0415

        conn = self._open()
        try:
            row = conn.execute(
                "SELECT data FROM cordon_audit_evidence WHERE sha256 = %s", (digest,)
            ).fetchone()
        except psycopg.Error as exc:
            raise _read_error(self._url, exc) from None
        return None if row is None else bytes(row[0])

    def check_evidence(self, digests: Iterable[str]) -> None:
        """Read and hash the blobs of `digests` not checked yet, streamed in batches from one
        server-side cursor (memory: a batch of blobs, not the table)."""
        import psycopg  # noqa: PLC0415

        wanted = sorted({d for d in digests if d not in self._problems})
        if not wanted:
            return
        conn = self._open()
        seen: set[str] = set()
        try:
            with conn.cursor(name="cordon_evidence") as cur:
                cur.itersize = _EVIDENCE_BATCH
                cur.execute(
                    "SELECT sha256, data FROM cordon_audit_evidence WHERE sha256 = ANY(%s)",
                    (wanted,),
                )
                for digest, data in cur:
                    seen.add(str(digest))
                    self._problems[str(digest)] = _problem(str(digest), bytes(data))
        except psycopg.Error as exc:
            raise _read_error(self._url, exc) from None
        for digest in wanted:
            if digest not in seen:
                self._problems[digest] = _problem(digest, None)

    def evidence_problem(self, digest: str) -> str | None:
        """None when the blob exists and still hashes to `digest`, else what is wrong (the
        blob is read and hashed here, by this process, once per digest)."""
        if digest not in self._problems:
            self.check_evidence([digest])
        return self._problems[digest]

    def blob(self, digest: str) -> tuple[bytes | None, str | None]:
        """The blob's bytes if intact, else None and what is wrong (for a report section)."""
        data = self.evidence_data(digest)
        problem = _problem(digest, data)
        self._problems[digest] = problem
        return (None, problem) if problem is not None else (data, None)


def _problem(digest: str, data: bytes | None) -> str | None:
    if data is None:
        return "is missing from cordon_audit_evidence"
    if hashlib.sha256(data).hexdigest() != digest:
        return "was altered (its content no longer has this sha256)"
    return None


def _read_error(url: str, exc: BaseException) -> AuditError:
    return AuditError(
        f"cannot read the audit chain at {redact_url(url)}: {type(exc).__name__}: "
        f"{str(exc).strip()}",
        hint="check that the PostgreSQL server is up and reachable (CORDON_STATE_URL)",
    )


@contextlib.contextmanager
def reading(url: str) -> Iterator[PgSnapshot]:
    """The chain read in one REPEATABLE READ transaction, kept open for the block: records,
    seals and head at once, evidence blobs by sha256 on demand (appends going on meanwhile are
    not seen). `AuditError` when there is no chain or no server."""
    import psycopg  # noqa: PLC0415

    where = f"{redact_url(url)} ({TABLE})"
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise _read_error(url, exc) from None
    snap: PgSnapshot | None = None
    try:
        with conn:
            if conn.execute("SELECT to_regclass('cordon_audit')").fetchone() == (None,):
                raise AuditError(
                    f"no audit chain in the database {redact_url(url)} (no table {TABLE})",
                    hint="a daemon or command with this CORDON_STATE_URL creates it at its first "
                    "record; check the URL",
                )
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                rows = [
                    (int(s), str(line))
                    for s, line in conn.execute("SELECT seq, line FROM cordon_audit ORDER BY seq")
                ]
                seals = [
                    (int(i), str(line))
                    for i, line in conn.execute(
                        "SELECT id, line FROM cordon_audit_seals ORDER BY id"
                    )
                ]
                head_row = conn.execute(
                    "SELECT seq, hash FROM cordon_audit_head WHERE name = 'head'"
                ).fetchone()
                head = None if head_row is None else Head(TABLE, int(head_row[0]), str(head_row[1]))

                snap = PgSnapshot(where, rows, seals, head, conn, url)
                yield snap
    except psycopg.Error as exc:
        raise _read_error(url, exc) from None
    finally:
        if snap is not None:
            snap.close()


def snapshot(url: str) -> PgSnapshot:
    """The records, seals and head of the chain in one read (its evidence is not readable
    after it: use `reading` for that). `AuditError` when there is no chain or no server."""
    with reading(url) as snap:
        return snap


def read_records(url: str) -> list[dict[str, Any]]:
    """Every well-formed record of the chain in seq order (what `report.read_records` returns
    for a log directory); lines that are not JSON objects are skipped (the verifier names them)."""
    out = []
    for _seq, line in snapshot(url).rows:
        record = _json_object(line)
        if record is not None:
            out.append(record)
    return out
