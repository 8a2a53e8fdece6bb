"""Where the audit chain is read from: a log directory's files, or the group's one chain in
PostgreSQL (`agent.audit.pgchain`, when the state is there). The report, the regulators' drafts
and the verifier read either the same way through `ChainSource`.

Imports the standard library, `agent.errors` and `agent.audit` reading modules (psycopg only
through `agent.audit.pgchain`, when a PostgreSQL chain is read); never the pipeline or the engine.
Reads; writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.audit import evidence, pgchain
from agent.audit.chain import audit_files, iter_lines
from agent.audit.verify import Verification, verify_snapshot, verify_url
from agent.audit.verify import verify as verify_files

__all__ = ["ChainRead", "ChainSource", "file_records"]

EVIDENCE_TABLE = "cordon_audit_evidence"


def _record(raw: bytes | str) -> dict[str, Any] | None:
    """A line as a record, or None when it is not one (the verifier names those)."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("event"), str) else None


def file_records(log_dir: Path) -> list[dict[str, Any]]:
    """Every readable record of the log in chain order (verification reports the unreadable)."""
    return [r for _f, _n, raw in iter_lines(audit_files(log_dir)) if (r := _record(raw))]


@dataclass(frozen=True)
class ChainRead:
    """One read of a chain: its records in chain order, and its evidence blobs by sha256
    (`blob(digest)`: the bytes, or None and what is wrong: missing, altered)."""

    label: str
    records: list[dict[str, Any]]
    blob: Callable[[str], tuple[bytes | None, str | None]]
    evidence_where: str  # where the blobs are, for the reader of the report
    in_database: bool = False
    integrity: Verification | None = None  # the verification of this same read, if asked


@dataclass(frozen=True)
class ChainSource:
    """A log directory (`log_dir`) or a PostgreSQL URL (`url`): exactly one of them."""

    log_dir: Path | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.log_dir is None) == (self.url is None):
            raise ValueError("a chain source is a log directory or a PostgreSQL URL, not both")

    @classmethod
    def of(cls, where: ChainSource | Path | str) -> ChainSource:
        """`where` as a source: a `postgresql://` URL is the chain in that database, any other
        path a log directory."""
        if isinstance(where, ChainSource):
            return where
        if pgchain.is_url(where):
            return cls(url=str(where))
        return cls(log_dir=Path(where))

    @property
    def in_database(self) -> bool:
        return self.url is not None

    def label(self) -> str:
        """Where the chain is, for a reader (a report is filed, copied, sent): the log
        directory, or the database and table, its URL without a password or the query (where
        libpq options live)."""
        if self.url is not None:
            return f"{pgchain.redact_url(self.url)} ({pgchain.TABLE})"
        return str(self.log_dir)

    def records(self) -> list[dict[str, Any]]:
        """Every well-formed record in chain order (the unreadable are the verifier's)."""
        if self.url is not None:
            return [r for _seq, line in pgchain.snapshot(self.url).rows if (r := _record(line))]
        assert self.log_dir is not None
        return file_records(self.log_dir)

    @contextmanager
    def open(
        self, *, verify: bool = False, public_key: Ed25519PublicKey | None = None
    ) -> Iterator[ChainRead]:
        """The records and the evidence from one read, for the block; with `verify`, the
        chain's verification of that same read too (`ChainRead.integrity`). A PostgreSQL chain
        is read in ONE snapshot kept open for the block: the records and seals at once, each
        evidence blob by its sha256 when the verifier or a report section asks for it.
        `AuditError` when a PostgreSQL chain cannot be read."""
        if self.url is None:
            assert self.log_dir is not None
            log_dir = self.log_dir

            def blob(digest: str) -> tuple[bytes | None, str | None]:
                problem = evidence.check(log_dir, digest)
                if problem is not None:
                    return None, problem
                return evidence.path_for(log_dir, digest).read_bytes(), None

            integrity = verify_files(log_dir, public_key=public_key) if verify else None
            yield ChainRead(
                self.label(),
                file_records(log_dir),
                blob,
                f"{evidence.EVIDENCE_DIR}/<sha256> under the log directory",
                integrity=integrity,
            )
            return
        with pgchain.reading(self.url) as snap:
            integrity = verify_snapshot(snap, public_key=public_key) if verify else None
            records = [r for _seq, line in snap.rows if (r := _record(line))]

            def db_blob(digest: str) -> tuple[bytes | None, str | None]:
                if not evidence.HEX64.match(digest):
                    return None, "is not a sha256 hex digest"
                return snap.blob(digest)

            yield ChainRead(
                self.label(),
                records,
                db_blob,
                f"table {EVIDENCE_TABLE}, by sha256, in the state database",
                in_database=True,
                integrity=integrity,
            )

    def verify(self, *, public_key: Ed25519PublicKey | None = None) -> Verification:
        """`agent.audit.verify.verify` of the directory, or `verify_url` of the database."""
        if self.url is not None:
            return verify_url(self.url, public_key=public_key)
        assert self.log_dir is not None
        return verify_files(self.log_dir, public_key=public_key)
