"""A throwaway PostgreSQL cluster for the tests and the benchmark: Debian's server binaries
(/usr/lib/postgresql/<version>/bin, installed by scripts/install-system-deps.sh), initdb into a
temporary directory as an unprivileged user (`postgres` when run as root, else the caller), its
Unix socket in that directory, a random port, no TCP at all (`listen_addresses=''`). Trust
authentication is safe there: only that user (and root) may enter the socket's directory.
Stopped by the postmaster's PID, the directory removed.

    with PgServer.start() as pg:
        url = pg.database()     # a fresh, empty namespace: postgresql://cordon@/cordon?host=...
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

ROLE = "cordon"


class PgUnavailable(Exception):
    """No PostgreSQL server binaries on this machine."""


def bin_dir() -> Path:
    """The newest installed server's binaries."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PgUnavailable(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: run "
            "scripts/install-system-deps.sh (Debian's postgresql)"
        )
    return found[-1].parent


class PgServer:
    def __init__(self, root: Path, user: str, port: int, bindir: Path) -> None:
        self.root = root
        self.user = user
        self.port = port
        self.bindir = bindir
        self.data = root / "data"
        self.sock = root / "sock"
        self.pid: int | None = None
        self._n = 0
        self._options = ""

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def start(cls, *, fsync: bool = True) -> Iterator[PgServer]:
        bindir = bin_dir()
        root = Path(tempfile.mkdtemp(prefix="cordon-pg-"))
        user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                pw = pwd.getpwnam("nobody")
                user = "nobody"
            os.chown(root, pw.pw_uid, pw.pw_gid)
        server = cls(root, user, random.randint(20000, 60000), bindir)
        try:
            server._boot(fsync=fsync)
            yield server
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)

    def _as_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(
            self._as_user(argv), capture_output=True, text=True, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def _boot(self, *, fsync: bool) -> None:
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        self._run(["mkdir", "-m", "0700", str(self.sock)])
        self._options = (
            f"-c listen_addresses='' -c unix_socket_directories={self.sock} -p {self.port} "
            f"-c fsync={'on' if fsync else 'off'} -c max_connections=200"
        )
        self._pg_start()

    def _pg_start(self) -> None:
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-o",
                self._options,
            ]
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """Start the server again after `stop` (same data, socket and port): crash recovery
        replays its WAL, as after a real crash or an ops team's immediate restart."""
        if self.pid is not None:
            raise RuntimeError("the server is running: stop it first")
        self._pg_start()

    def stop(self) -> None:
        """Immediate shutdown by the postmaster's PID (SIGQUIT: a throwaway cluster needs no
        shutdown checkpoint; every client's connection is cut at once), waiting for it to exit.
        `restart` starts it again."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    # -- databases -------------------------------------------------------------------------

    def url(self, dbname: str = "cordon", schema: str | None = None) -> str:
        url = f"postgresql://{ROLE}@/{dbname}?host={self.sock}&port={self.port}"
        return url if schema is None else f"{url}&options=-csearch_path%3D{schema}"

    def database(self) -> str:
        """A new empty namespace's URL: a schema of its own in the database `cordon` (made
        once), as the search path of every connection to the URL (quicker than a database)."""
        import psycopg  # noqa: PLC0415 - only with a server

        if self._n == 0:
            with psycopg.connect(self.url("postgres"), autocommit=True) as db:
                db.execute("CREATE DATABASE cordon")
        self._n += 1
        name = f"t{self._n}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {name}")
        return self.url(schema=name)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text()
        except OSError:
            return ""


# -- the fixtures (imported by tests/conftest.py) ------------------------------------------------


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway cluster per session. In CI a missing server is a failure, never a skip."""
    try:
        bin_dir()
    except PgUnavailable as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL tests must run in CI: {exc}")
        pytest.skip(f"SKIPPED POSTGRESQL TEST: {exc}")
    with PgServer.start() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def state_backend(request: pytest.FixtureRequest) -> str:
    """Each state backend in turn: the test runs once on SQLite files, once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def state_where(
    state_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], Path | str]:
    """Where a store named `name` lives on this test's backend: `<tmp>/<name>.sqlite`, or this
    test's own new PostgreSQL database (every store of the test in it, as with one URL)."""
    if state_backend == "sqlite":
        return lambda name: tmp_path / f"{name}.sqlite"
    url = request.getfixturevalue("pg_server").database()
    return lambda name: url


def copy_sqlite(src: Path, url: str) -> None:
    """Recreate a SQLite file's tables and indexes (in PostgreSQL's types) and rows in the empty
    database at `url`, without its schema version: a store written by a release that knew only
    SQLite, as if it had been on PostgreSQL. Identity columns go on after the copied rows."""
    import psycopg  # noqa: PLC0415 - only with a server

    from agent.engine.store import pg_schema  # noqa: PLC0415

    db = sqlite3.connect(src)
    try:
        found = db.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid"
        ).fetchall()
        with psycopg.connect(url) as pg:
            for kind, name, sql in found:
                pg.execute(pg_schema(sql))
                if kind != "table":
                    continue
                cols = [r[1] for r in db.execute(f"PRAGMA table_info({name})")]
                rows = db.execute(f"SELECT {', '.join(cols)} FROM {name}").fetchall()
                if rows:
                    marks = ", ".join("%s" for _ in cols)
                    with pg.cursor() as cur:
                        cur.executemany(
                            f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({marks})", rows
                        )
                if "AUTOINCREMENT" in sql:
                    pg.execute(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
                    )
    finally:
        db.close()


def schema_version(where: Path | str, store: str) -> int:
    """The schema version the store `store` at `where` is stamped with (0: none)."""
    import psycopg  # noqa: PLC0415 - only with a server

    if isinstance(where, Path):
        db = sqlite3.connect(where)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    with psycopg.connect(where) as pg:
        if pg.execute("SELECT to_regclass('cordon_schema')").fetchone() == (None,):
            return 0
        row = pg.execute("SELECT version FROM cordon_schema WHERE store = %s", (store,)).fetchone()
    return int(row[0]) if row is not None else 0


def stamp(where: Path | str, store: str, version: int) -> None:
    """Stamp the store `store` at `where` with `version` (a newer release's, in the tests)."""
    import psycopg  # noqa: PLC0415 - only with a server

    if isinstance(where, Path):
        db = sqlite3.connect(where)
        db.execute(f"PRAGMA user_version={version}")
        db.close()
        return
    with psycopg.connect(where) as pg:
        pg.execute(
            "CREATE TABLE IF NOT EXISTS cordon_schema (store TEXT PRIMARY KEY, version INTEGER)"
        )
        pg.execute(
            "INSERT INTO cordon_schema VALUES (%s, %s) ON CONFLICT (store) "
            "DO UPDATE SET version = excluded.version",
            (store, version),
        )


def snapshot(where: Path | str) -> object:
    """Everything a store's file or database holds (to prove nothing changed)."""
    import psycopg  # noqa: PLC0415 - only with a server

    if isinstance(where, Path):
        return where.read_bytes()
    with psycopg.connect(where) as pg:
        tables = [
            r[0]
            for r in pg.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        ]
        return {
            t: (
                sorted(
                    r[0]
                    for r in pg.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema() AND table_name = %s",
                        (t,),
                    )
                ),
                sorted(map(repr, pg.execute(f"SELECT * FROM {t}").fetchall())),
            )
            for t in tables
        }


def kept_store(state_where: Callable[[str], Path | str], name: str, src: Path) -> Path | str:
    """The kept store `src` (a SQLite file of an earlier release) on this test's backend."""
    where = state_where(name)
    if isinstance(where, Path):
        shutil.copyfile(src, where)
    else:
        copy_sqlite(src, where)
    return where


Where = Callable[[str], Path | str]  # the `state_where` fixture: a store's file or database URL


# -- the switch: the store-using tests on PostgreSQL (`--state-backend=postgresql`) --------------

ENV_SWITCH = "CORDON_TEST_STATE"
# a module using any of these uses a state store: it runs on PostgreSQL under the switch
STORE_WORDS = (
    "Journal(",
    "HealthStore(",
    "Service(",
    "state_where",
    "journal.at(",
    "local(",
    "Stack(",
)


def add_option(parser: pytest.Parser) -> None:
    parser.addoption(
        "--state-backend",
        choices=("sqlite", "postgresql"),
        default=os.environ.get(ENV_SWITCH) or "sqlite",
        help="where the tests' state stores live: SQLite files (default) or, for every "
        "non-twin test of a module that uses a store, a fresh database of one shared "
        f"throwaway PostgreSQL server (env {ENV_SWITCH}=postgresql)",
    )


def on_postgresql(config: pytest.Config) -> bool:
    return bool(config.getoption("--state-backend") == "postgresql")


def uses_a_store(item: pytest.Item) -> bool:
    """A test of a module that uses a store, in this process or in the `cordon` daemons and
    CLIs it starts (a `Stack`: their state is a database of the pass's server,
    `pass_database`)."""
    path = getattr(item, "path", None)
    if path is None:
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return False
    return any(word in text for word in STORE_WORDS)


def is_twin(item: pytest.Item) -> bool:
    return bool(item.get_closest_marker("twin") or item.get_closest_marker("twin_lifecycle"))


def select_for_postgresql(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the switch: only the non-twin tests of modules that use a store, each test of
    both backends (`state_backend`) only on PostgreSQL; the others deselected (they ran, or
    run, in the SQLite pass)."""
    if not on_postgresql(config):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("state_backend") if params is not None else None
        wanted = not is_twin(item) and uses_a_store(item) and backend in (None, "postgresql")
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True)
def _stores_on_postgresql(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under the switch: this test's state on a fresh database of the shared server, as a
    daemon configured with one URL has it: `CORDON_STATE_URL` set (the journal, health store
    and job store by default), and a journal or health store opened at a file path opened on
    that database instead. A test that cannot apply to PostgreSQL (it reads or breaks the
    SQLite file itself) is marked `sqlite_only` with its reason."""
    if not on_postgresql(request.config) or is_twin(request.node):
        yield
        return
    only = request.node.get_closest_marker("sqlite_only")
    if only is not None:
        pytest.skip(f"SQLite only: {only.args[0] if only.args else 'a SQLite file'}")
    from agent.engine import journal  # noqa: PLC0415
    from agent.service import health  # noqa: PLC0415

    url = request.getfixturevalue("pg_server").database()
    patch = request.getfixturevalue("monkeypatch")
    patch.setenv("CORDON_STATE_URL", url)

    def redirect(cls: Any) -> None:
        real = cls.__init__

        def init(self: Any, where: Path | str | None = None) -> None:
            # while the setting is in force (a test may unset it to test the files)
            on_url = isinstance(where, Path) and os.environ.get("CORDON_STATE_URL") == url
            real(self, url if on_url else where)

        patch.setattr(cls, "__init__", init)

    redirect(journal.Journal)
    redirect(health.HealthStore)
    yield


# -- the daemons a test starts itself (tests/daemon/test_daemon_cli.py `Stack`) ------------------

_PASS_SERVER: list[PgServer] = []  # under the switch: the session's one server


@pytest.fixture(scope="session", autouse=True)
def _pass_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under the switch: the pass's shared server, where `pass_database` makes databases for
    the daemons and CLIs a test starts as processes (they read `CORDON_STATE_URL` from the
    environment the test gives them, not from this process)."""
    if not on_postgresql(request.config):
        yield
        return
    _PASS_SERVER.append(request.getfixturevalue("pg_server"))
    try:
        yield
    finally:
        _PASS_SERVER.clear()


def pass_database() -> str | None:
    """Under `--state-backend=postgresql`: the URL of a fresh database of the pass's shared
    server (for a `Stack`'s daemon and CLIs); else None (their state directory's files)."""
    return _PASS_SERVER[0].database() if _PASS_SERVER else None
