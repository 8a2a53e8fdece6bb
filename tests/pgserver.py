"""A throwaway PostgreSQL cluster for the tests and the benchmark: Debian's server binaries
(/usr/lib/postgresql/<version>/bin, installed by scripts/install-system-deps.sh), initdb into a
temporary directory as an unprivileged user (`postgres` when run as root, else the caller), its
Unix socket in that directory, a random port, no TCP at all (`listen_addresses=''`). Trust
authentication is safe there: only that user (and root) may enter the socket's directory.
Stopped by the postmaster's PID, the directory removed.

    with PgServer.start() as pg:
        url = pg.database()     # a fresh, empty database: postgresql://cordon@/t1?host=...
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

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
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={self.sock} -p {self.port} "
            f"-c fsync={'on' if fsync else 'off'} -c max_connections=200"
        )
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
                options,
            ]
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Fast shutdown by the postmaster's PID (SIGINT), waiting for it to exit."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
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

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}@/{dbname}?host={self.sock}&port={self.port}"

    def database(self) -> str:
        """A new empty database's URL."""
        import psycopg  # noqa: PLC0415 - only with a server

        self._n += 1
        name = f"t{self._n}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

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
def backend(request: pytest.FixtureRequest) -> str:
    """Each state backend in turn: the test runs once on SQLite files, once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def state_where(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str], Path | str]:
    """Where a store named `name` lives on this test's backend: `<tmp>/<name>.sqlite`, or this
    test's own new PostgreSQL database (every store of the test in it, as with one URL)."""
    if backend == "sqlite":
        return lambda name: tmp_path / f"{name}.sqlite"
    url = request.getfixturevalue("pg_server").database()
    return lambda name: url
