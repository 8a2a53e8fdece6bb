"""Opening a versioned SQLite file: WAL, the caller's `synchronous` level, and the schema brought
to its version (`PRAGMA user_version`) in one transaction; a file of a newer release refused,
unchanged. The SQLite half of `agent.engine.store` (the journal, the daemon's health store).

Imports only the standard library and agent.errors.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from agent.errors import DaemonError


def open_versioned(
    path: Path,
    *,
    what: str,
    schema: str,
    version: int,
    synchronous: Literal["FULL", "NORMAL"],
    upgrade: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Connect to `path` (made with its parent folder if missing) and migrate it: the `schema`
    statements (idempotent), then `upgrade` (what a bare CREATE cannot do, e.g. added
    columns), then the version, all in one transaction. `what` names the file in errors."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > version:
            raise DaemonError(
                f"the {what} {path} was written by a newer Cordon (schema version {found}; "
                f"this release reads up to {version}): nothing was changed",
                hint="use that release (or a newer one) with this state directory",
            )
        if found < version:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in schema.split(";"):
                    if statement.strip():
                        db.execute(statement)
                if upgrade is not None:
                    upgrade(db)
                db.execute(f"PRAGMA user_version={version}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to the file `open_versioned` just opened (never creates it): the
    store's reads, which in WAL mode never wait for its writer."""
    db = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro",
        uri=True,
        timeout=30,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        db.execute("PRAGMA query_only=ON")
    except BaseException:
        db.close()
        raise
    return db
