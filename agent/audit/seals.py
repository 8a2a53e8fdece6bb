"""Seals of the chain head: `seals.jsonl` in the log directory, RFC 5424 syslog copies, the timer.

Imports only the standard library, `agent.errors` and `agent.audit.chain`; never structlog or the
engine. A seal says "the chain reached `seq` with `hash` in `file` at `ts`": a log that ends
earlier was truncated, a record whose hash differs was rewritten. A copy sent to a remote syslog
survives an attacker who also edits `seals.jsonl`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.audit.chain import ChainWriter, canonical
from agent.errors import AuditError

__all__ = ["SEALS_NAME", "Sealer", "SyslogTarget", "format_rfc5424", "read_seals", "seal_head"]

SEALS_NAME = "seals.jsonl"
# local0.notice; the private enterprise number 32473 is reserved for documentation (RFC 5612).
_PRI = 16 * 8 + 5
_SD_ID = "seal@32473"


@dataclass(frozen=True)
class SyslogTarget:
    """Where seal copies go: `udp://host:port`, `tcp://host:port`, or `host:port` (UDP)."""

    transport: Literal["udp", "tcp"]
    host: str
    port: int

    @classmethod
    def parse(cls, spec: str) -> SyslogTarget:
        transport: Literal["udp", "tcp"] = "udp"
        rest = spec
        if "://" in spec:
            scheme, rest = spec.split("://", 1)
            if scheme not in ("udp", "tcp"):
                raise AuditError(
                    f"syslog target {spec!r}: unknown transport {scheme!r}",
                    hint="use udp://host:port or tcp://host:port",
                )
            transport = "tcp" if scheme == "tcp" else "udp"
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AuditError(
                f"syslog target {spec!r} is not host:port",
                hint="use udp://host:port or tcp://host:port",
            )
        return cls(transport, host, int(port))

    def __str__(self) -> str:
        return f"{self.transport}://{self.host}:{self.port}"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(seal: dict[str, Any], *, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message carrying a seal in structured data (file, seq, hash)."""
    params = " ".join(
        f'{key}="{_sd_escape(str(seal[key]))}"' for key in ("file", "seq", "hash") if key in seal
    )
    host = "".join(c for c in hostname if 33 <= ord(c) <= 126)[:255] or "-"
    header = f"<{_PRI}>1 {seal['ts']} {host} cordon {procid} seal"
    return f"{header} [{_SD_ID} {params}] audit chain head seq={seal['seq']}".encode()


def send_syslog(target: SyslogTarget, message: bytes, *, timeout: float = 2.0) -> None:
    """Send one message; TCP uses RFC 6587 octet counting. Failures become `AuditError`."""
    try:
        if target.transport == "udp":
            family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, (target.host, target.port))
        else:
            with socket.create_connection((target.host, target.port), timeout=timeout) as sock:
                sock.sendall(str(len(message)).encode() + b" " + message)
    except OSError as exc:
        raise AuditError(
            f"cannot send the seal to syslog {target}: {exc.strerror or type(exc).__name__}",
            hint="the local seal was written; check the syslog collector and the network path",
        ) from exc


def read_seals(log_dir: Path) -> tuple[list[dict[str, Any]], list[str]] | None:
    """(well-formed seals in order, problems) from `seals.jsonl`, or None when there is no file."""
    path = log_dir / SEALS_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    seals: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            seal = json.loads(raw)
        except ValueError:
            problems.append(f"{SEALS_NAME}:{number}: not JSON")
            continue
        if (
            not isinstance(seal, dict)
            or type(seal.get("seq")) is not int
            or not isinstance(seal.get("hash"), str)
            or not isinstance(seal.get("file"), str)
        ):
            problems.append(f"{SEALS_NAME}:{number}: not a seal (needs file, seq, hash)")
            continue
        seal["line"] = number
        seals.append(seal)
    return seals, problems


def _last_seal(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 4096))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for raw in reversed(lines):
        try:
            seal = json.loads(raw)
        except ValueError:
            continue
        if isinstance(seal, dict):
            return seal
    return None


def seal_head(writer: ChainWriter, *, reason: str) -> dict[str, Any] | None:
    """Write a seal of the current chain head to `seals.jsonl`; None if empty or already sealed."""
    path = writer.log_dir / SEALS_NAME
    try:
        with writer.locked():
            head = writer.head()
            if head.seq == 0:
                return None
            last = _last_seal(path)
            if last is not None and (last.get("seq"), last.get("hash")) == (head.seq, head.hash):
                return None
            seal = {
                "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                "file": head.file,
                "seq": head.seq,
                "hash": head.hash,
                "reason": reason,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            writer.sync()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, canonical(seal) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise AuditError(
            f"cannot write the seal file {path}: {exc.strerror or type(exc).__name__}",
            hint="check that the log directory is writable and the disk is not full",
        ) from exc
    return seal


class Sealer:
    """Seals the head every `every` appends, every `interval` seconds if anything was appended,
    at `close()`, and on demand; copies each seal to a syslog target if one is configured.

    Syslog failures never stop logging: they are passed to `on_error` (the pipeline logs them).
    """

    def __init__(
        self,
        writer: ChainWriter,
        *,
        syslog: SyslogTarget | None = None,
        interval: float = 60.0,
        every: int = 10_000,
        on_error: Callable[[AuditError], None] | None = None,
    ) -> None:
        self.writer = writer
        self.syslog = syslog
        self.interval = interval
        self.every = every
        self.on_error = on_error
        self._count = 0
        self._dirty = False  # a plain flag: set on every append, so no Event (it takes a lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def note_append(self) -> None:
        """Called after each append: starts the timer lazily, seals every `every` records."""
        self._dirty = True
        self._count += 1
        if self._thread is None and self.interval > 0:
            with self._guard:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="cordon-audit-sealer", daemon=True
                    )
                    self._thread.start()
        if self._count >= self.every:
            self.seal("count")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._dirty:
                try:
                    self.seal("periodic")
                except AuditError as exc:
                    if self.on_error is not None:
                        self.on_error(exc)

    def seal(self, reason: str = "demand") -> dict[str, Any] | None:
        """Seal now; returns the seal written (None if there was nothing new to seal)."""
        self._dirty = False
        self._count = 0
        seal = seal_head(self.writer, reason=reason)
        if seal is not None and self.syslog is not None:
            message = format_rfc5424(seal, hostname=seal["host"], procid=seal["pid"])
            try:
                send_syslog(self.syslog, message)
            except AuditError as exc:
                if self.on_error is None:
                    raise
                self.on_error(exc)
        return seal

    def close(self) -> dict[str, Any] | None:
        """Stop the timer and seal what was appended since the last seal."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        return self.seal("close")
