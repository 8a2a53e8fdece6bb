"""The hash chain on disk: canonical records, day-rotated files, the shared lock and the chain head.

Imports only the standard library, `agent.errors` and `agent.audit.redact`; never structlog, the
engine or a device library.

A record is a JSON object with `seq` (1, 2, ...), `prev` (the previous record's `hash`, 64 zeros
for the first), `ts` (UTC, ISO-8601 with `+00:00`), `file` (the name of the day file it is written
to, so a renamed file no longer matches its records; absent in logs written before 2025) and
`hash` = sha256 of the canonical JSON of the record without `hash` (sorted keys, `,`/`:`
separators, UTF-8). A line is exactly those bytes with
`,"hash":"<hex>"` added as the last key; verification insists on these bytes, so duplicate keys or
reformatting are caught too. Lines go to `audit-YYYY-MM-DD.jsonl` (UTC day of `ts`) and the chain
continues across files.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agent.audit import redact
from agent.errors import AuditError

__all__ = [
    "GENESIS",
    "LOCK_NAME",
    "ChainWriter",
    "Head",
    "audit_files",
    "canonical",
    "file_name_for",
    "finish",
    "iter_lines",
    "keep_aside",
    "record_hash",
]

GENESIS = "0" * 64
LOCK_NAME = ".audit.lock"
CHAIN_FIELDS = ("seq", "prev", "ts", "file", "hash")
FILE_RE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_TAIL_CHUNK = 8 * 1024


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, compact separators, UTF-8, non-JSON values as str."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical form of `record`, which must not contain `hash`."""
    return hashlib.sha256(canonical(record)).hexdigest()


def file_name_for(moment: datetime) -> str:
    """The log file that holds records stamped at `moment` (its UTC day)."""
    return f"audit-{moment.astimezone(UTC):%Y-%m-%d}.jsonl"


def audit_files(log_dir: Path) -> list[Path]:
    """The audit files of `log_dir` in chain order (their names sort by day)."""
    try:
        names = os.listdir(log_dir)
    except FileNotFoundError:
        return []
    return [log_dir / n for n in sorted(names) if FILE_RE.match(n)]


def iter_lines(paths: Iterable[Path]) -> Iterator[tuple[str, int, bytes]]:
    """Every line of `paths` as (file name, 1-based line number, raw bytes as read).

    The newline is kept: a last line without one was cut (crash, full disk, or truncation).
    """
    for path in paths:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                yield path.name, number, raw


@dataclass(frozen=True)
class Head:
    """The last record of the chain: where it is, its `seq` and its `hash` (genesis: seq 0)."""

    file: str
    seq: int
    hash: str


GENESIS_HEAD = Head("", 0, GENESIS)


def _parse_head(raw: bytes, file: str) -> Head | None:
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    seq, digest = rec.get("seq"), rec.get("hash")
    if type(seq) is not int or not isinstance(digest, str) or len(digest) != 64:
        return None
    return Head(file, seq, digest)


def _last_head_in(path: Path) -> Head | None:
    """The last well-formed record of one file, read backwards from its end."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        chunk = _TAIL_CHUNK
        while True:
            start = max(0, size - chunk)
            fh.seek(start)
            lines = fh.read(size - start).split(b"\n")
            if start > 0:
                lines = lines[1:]  # probably cut in the middle
            for raw in reversed(lines):
                if raw.strip():
                    head = _parse_head(raw, path.name)
                    if head is not None:
                        return head
            if start == 0:
                return None
            chunk *= 4


def read_head(log_dir: Path) -> Head:
    """The chain head on disk: the last well-formed record of the latest file that has one."""
    for path in reversed(audit_files(log_dir)):
        head = _last_head_in(path)
        if head is not None:
            return head
    return GENESIS_HEAD


def _ends_without_newline(path: Path, size: int) -> bool:
    if size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) != b"\n"


@dataclass(frozen=True)
class _Seen:
    """What this writer last saw of the file it appended to; if unchanged, `head` is still valid."""

    name: str
    path: str
    ino: int
    size: int
    head: Head


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChainWriter:
    """Appends records to the chain of one log directory, safely across threads and processes.

    Every append takes an exclusive `flock` on `LOCK_NAME` in the directory; the head is re-read
    from disk only when the file changed since this writer's own last append (another process
    wrote), so a daemon and a `--local` CLI extend one chain.
    """

    def __init__(self, log_dir: Path, *, clock: Any = utc_now) -> None:
        self.log_dir = log_dir
        self._clock = clock
        self._tlock = threading.RLock()  # `locked` nests in one thread
        self._pid = -1
        self._lock_fd = -1
        self._fd = -1
        self._fd_name = ""
        self._fd_path = ""
        self._seen: _Seen | None = None
        self._holding = False
        self._day: date | None = None
        self._day_name = ""
        self.appended = 0
        self.last_seq = 0  # seq of the last record this writer appended (0: none yet)
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))

    # -- locking -------------------------------------------------------------------------------

    def _open(self) -> None:
        """Open the lock file; `_pid` is reset to -1 in a forked child, which then reopens."""
        pid = os.getpid()
        if pid == self._pid:
            return
        try:
            self.log_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            self._lock_fd = os.open(
                self.log_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            raise _write_error(self.log_dir, exc) from exc
        self._fd, self._fd_name, self._seen, self._pid = -1, "", None, pid

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory lock (and this process's thread lock) for the duration; within
        it, this thread's appends (and a nested `locked`) take neither again: a run of appends
        holds the chain once (`agent.audit.appending`), each still its own record."""
        with self._tlock:
            if self._holding:  # this thread holds both already
                yield
                return
            try:
                if self._pid < 0:
                    self._open()
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            except OSError as exc:  # e.g. ENOLCK on a network file system: as `append` says it
                self._close_fd()
                raise _write_error(self.log_dir, exc) from exc
            self._holding = True
            try:
                yield
            finally:
                self._holding = False
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- head ----------------------------------------------------------------------------------

    def _cached_head(self, name: str) -> Head | None:
        seen = self._seen
        if seen is None:
            return None
        try:
            st = os.stat(seen.path)
        except FileNotFoundError:
            return None
        if (st.st_ino, st.st_size) != (seen.ino, seen.size):
            return None
        if name != seen.name and (self.log_dir / name).exists():
            return None  # another process opened the new day's file
        return seen.head

    def _file_name(self, now: datetime) -> str:
        day = now.date()
        if day != self._day:
            self._day, self._day_name = day, file_name_for(now)
        return self._day_name

    def _resolve(self, now: datetime) -> tuple[str, Head, bool]:
        """(file to append to, chain head, whether that file needs a newline first)."""
        name = self._file_name(now)
        seen = self._seen
        if seen is not None and seen.name > name:
            name = seen.name  # the clock went back: never append to an older day
        head = self._cached_head(name)
        if head is not None:
            return name, head, False
        files = audit_files(self.log_dir)
        if files and files[-1].name > name:
            name = files[-1].name
        head = read_head(self.log_dir)
        path = self.log_dir / name
        size = path.stat().st_size if path.exists() else 0
        self._close_fd()  # the file may have been replaced; reopen by name
        return name, head, _ends_without_newline(path, size)

    def head(self) -> Head:
        """The current chain head, seen from disk; call only while holding `locked()`."""
        if not self._holding:
            raise RuntimeError("ChainWriter.head() needs locked()")
        return self._resolve(self._clock().astimezone(UTC))[1]

    # -- append --------------------------------------------------------------------------------

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record made of `fields` plus seq/prev/ts/hash; return the record written.

        Strings are scrubbed (registered secrets, CLI secret idioms) before hashing; masking
        values by key name is the pipeline's redaction processor's job, done here only when the
        record trips the scrub test. Fields named like chain fields are kept under a trailing
        underscore (`ts` -> `ts_`).
        """
        record = keep_aside(fields, CHAIN_FIELDS)
        try:
            with self.locked():
                digest = self._append_locked(record)
        except OSError as exc:
            self._close_fd()
            raise _write_error(self.log_dir, exc) from exc
        self.appended += 1
        self.last_seq = record["seq"]
        record["hash"] = digest
        return record

    def _append_locked(self, record: dict[str, Any]) -> str:
        now = self._clock()
        if now.tzinfo is not UTC:
            now = now.astimezone(UTC)
        name, head, newline = self._resolve(now)
        record["seq"] = head.seq + 1
        record["prev"] = head.hash
        record["ts"] = now.isoformat(timespec="microseconds")
        record["file"] = name
        body, digest = finish(record, ("seq", "prev", "ts", "file"))
        line = body + b"\n"
        fd = self._fd_for(name)
        _write_all(fd, b"\n" + line if newline else line)
        st = os.fstat(fd)
        path = self._fd_path
        self._seen = _Seen(name, path, st.st_ino, st.st_size, Head(name, record["seq"], digest))
        return digest

    def _fd_for(self, name: str) -> int:
        if self._fd_name != name or self._fd < 0:
            self._close_fd()
            self._fd_path = str(self.log_dir / name)
            self._fd = os.open(
                self._fd_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
            self._fd_name = name
        return self._fd

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._fd_name = -1, ""

    def sync(self) -> None:
        """Flush the current file to stable storage (called when the head is sealed)."""
        if self._fd >= 0 and self._pid == os.getpid():
            os.fsync(self._fd)

    def close(self) -> None:
        """Release the files; a later append reopens them."""
        with self._tlock:
            if self._pid == os.getpid():
                self._close_fd()
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)
            self._lock_fd, self._pid, self._seen = -1, -1, None

    def _forget_after_fork(self) -> None:
        self._tlock = threading.RLock()  # `locked` nests in one thread
        self._holding = False
        self._pid = -1  # the inherited descriptors share the parent's lock: reopen on next use


def _reset_after_fork(ref: weakref.ref[ChainWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._forget_after_fork()


def keep_aside(fields: Mapping[str, Any], chain_fields: Iterable[str]) -> dict[str, Any]:
    """A copy of `fields` where a field named like a chain field is kept under a trailing
    underscore (`ts` -> `ts_`): the chain's own fields are the writer's to set."""
    record = dict(fields)
    for key in chain_fields:
        if key in record:
            record[f"{key}_"] = record.pop(key)
    return record


def finish(record: dict[str, Any], chain_fields: Iterable[str]) -> tuple[bytes, str]:
    """The line of `record` (its chain fields set, no `hash` yet) and its hash: canonical bytes
    with `,"hash":"<hex>"` as the last key, no newline. Strings with lone surrogates are spelled
    out; a record that trips the scrub test is redacted by key (its `chain_fields` untouched).
    `record` is updated to what was hashed."""
    try:
        body = canonical(record)
    except UnicodeEncodeError:  # lone surrogates, e.g. from surrogateescape-decoded output
        clean = _without_surrogates(record)
        record.clear()
        record.update(clean)
        body = canonical(record)
    if redact.needs_scrub(body.decode("utf-8")):
        chain = {k: record.pop(k) for k in chain_fields if k in record}
        clean = redact.redact_event(record)
        record.clear()
        record.update(clean)
        record.update(chain)
        body = canonical(record)
    digest = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}', digest


def _without_surrogates(value: Any) -> Any:
    """`value` with lone surrogates in strings spelled out as `\\udcff` text (valid UTF-8)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_surrogates(v) for v in value]
    return value


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_error(log_dir: Path, exc: OSError) -> AuditError:
    if exc.errno == errno.ENOLCK:
        hint = (
            "its file system does not lock files (a network mount?): put the audit log on a "
            "local file system (CORDON_LOG_DIR)"
        )
    else:
        hint = "check that the log directory exists, is writable and the disk is not full"
    return AuditError(
        f"cannot write the audit log in {log_dir}: {exc.strerror or type(exc).__name__}",
        hint=hint,
    )
