"""Seals of the chain head: `seals.jsonl` in the log directory, RFC 5424 syslog copies, the timer.

Imports only the standard library, `cryptography` (Ed25519), `agent.errors`,
`agent.audit.chain` and `agent.audit.pgchain`; never structlog or the engine. On PostgreSQL
(`agent.audit.pgchain`) the seals are rows of `cordon_audit_seals`, written under the head lock,
the same objects signed the same way. A seal says "the chain reached `seq` with
`hash` in `file` at `ts`, `count` records since the genesis": a log that ends earlier was
truncated, a record whose hash differs was rewritten.

Anchoring. Whoever can write the log directory can also rewrite `seals.jsonl`, so a seal proves
something only if the writer signs it with an Ed25519 private key (`sig`, base64, over the
canonical JSON of the seal without `sig`; `key` names the key) and the verifier checks it with a
public key pinned outside the log directory. The private key is a secret reference
(`CORDON_AUDIT_SEAL_KEY=file:PATH` or `env:NAME`, a PEM PKCS#8 key as `cordon audit keygen`
writes it), resolved by `agent.secrets` so it is registered with the scrubber; the public key is
`ed25519:<base64 of the 32 raw bytes>`, a PEM, or `file:PATH` holding either. A copy sent to a
remote syslog survives an attacker who also edits `seals.jsonl` (RFC 5424, signature included).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.audit.chain import ChainWriter, Head, canonical
from agent.audit.pgchain import PgChainWriter
from agent.errors import AuditError

__all__ = [
    "ENV_PUBLIC_KEY",
    "ENV_SEAL_KEY",
    "SEALS_NAME",
    "Sealer",
    "SyslogTarget",
    "check_signature",
    "format_rfc5424",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_text",
    "read_seals",
    "seal_head",
]

ENV_SEAL_KEY = "CORDON_AUDIT_SEAL_KEY"  # secret reference to the writer's private key
ENV_PUBLIC_KEY = "CORDON_AUDIT_SEAL_PUBKEY"  # the verifier's pinned public key (or file:PATH)
_PUB_PREFIX = "ed25519:"

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


# -- keys -------------------------------------------------------------------------------------


def generate_key() -> tuple[bytes, str]:
    """A new signing key: (PEM PKCS#8 private key, `ed25519:<base64>` public key text)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_key_text(key.public_key())


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(public: Ed25519PublicKey) -> str:
    """The one-line form of a public key, as pinned in the configuration."""
    return _PUB_PREFIX + base64.b64encode(_raw(public)).decode("ascii")


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key (16 hex of the sha256 of its raw bytes), written in seals."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def load_private_key(text: str, *, what: str) -> Ed25519PrivateKey:
    """The Ed25519 private key in `text` (PEM PKCS#8). Errors never quote the key."""
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except (ValueError, TypeError, UnicodeError):
        raise AuditError(
            f"{what}: not a PEM private key without passphrase",
            hint="generate one with `cordon audit keygen KEYFILE`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(
            f"{what}: the private key is not an Ed25519 key",
            hint="generate one with `cordon audit keygen KEYFILE`",
        )
    return key


def load_public_key(spec: str, *, what: str, base_dir: Path | None = None) -> Ed25519PublicKey:
    """The public key `spec` names: `ed25519:<base64>`, a PEM, or `file:PATH` holding either."""
    text = spec.strip()
    if text.startswith("file:"):
        path = Path(os.path.expanduser(text[5:]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(
                f"{what}: cannot read the public key file {path}: "
                f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                hint="give the path of the public key `cordon audit keygen` printed",
            ) from None
        what = f"{what} ({path})"
    try:
        if text.startswith(_PUB_PREFIX):
            raw = base64.b64decode(text[len(_PUB_PREFIX) :], validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        key = serialization.load_pem_public_key(text.encode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(
            f"{what}: not an Ed25519 public key (expected 'ed25519:<base64 of 32 bytes>', a PEM "
            "public key, or file:PATH holding one)",
            hint="use the public key `cordon audit keygen` printed",
        )
    return key


def _signed_bytes(seal: Mapping[str, Any]) -> bytes:
    return canonical({k: v for k, v in seal.items() if k not in ("sig", "line")})


def check_signature(seal: Mapping[str, Any], public: Ed25519PublicKey) -> bool:
    """Whether `seal` carries a valid signature by `public` over all its other fields."""
    sig = seal.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public.verify(base64.b64decode(sig, validate=True), _signed_bytes(seal))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# -- syslog -----------------------------------------------------------------------------------


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_rfc5424(seal: dict[str, Any], *, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message carrying a seal in structured data (file, seq, hash, signature)."""
    params = " ".join(
        f'{key}="{_sd_escape(str(seal[key]))}"'
        for key in ("file", "seq", "hash", "count", "key", "sig")
        if key in seal
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


def _make_seal(
    head: Head, last: Mapping[str, Any] | None, *, reason: str, signer: Ed25519PrivateKey | None
) -> dict[str, Any] | None:
    """The seal of `head` (None: empty chain, or already sealed as asked by `last`)."""
    if head.seq == 0:
        return None
    if (
        last is not None
        and (last.get("seq"), last.get("hash")) == (head.seq, head.hash)
        and (signer is None or "sig" in last)
    ):
        return None
    seal: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "file": head.file,
        "seq": head.seq,
        "count": head.seq,  # records since the genesis; the verifier counts them
        "hash": head.hash,
        "reason": reason,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    if signer is not None:
        seal["key"] = key_id(signer.public_key())
        seal["sig"] = base64.b64encode(signer.sign(_signed_bytes(seal))).decode("ascii")
    return seal


def seal_head(
    writer: ChainWriter | PgChainWriter,
    *,
    reason: str,
    signer: Ed25519PrivateKey | None = None,
) -> dict[str, Any] | None:
    """Write a seal of the current chain head (to `seals.jsonl`, or to the PostgreSQL chain's
    seals table); None if empty or already sealed.

    With `signer`, the seal carries `key` (the public key's id) and `sig`; a head last sealed
    without a signature is sealed again with one.
    """
    if isinstance(writer, PgChainWriter):
        return writer.seal_with(
            lambda head, last: _make_seal(head, last, reason=reason, signer=signer)
        )
    path = writer.log_dir / SEALS_NAME
    try:
        with writer.locked():
            seal = _make_seal(writer.head(), _last_seal(path), reason=reason, signer=signer)
            if seal is None:
                return None
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
        writer: ChainWriter | PgChainWriter,
        *,
        syslog: SyslogTarget | None = None,
        signer: Ed25519PrivateKey | None = None,
        interval: float = 60.0,
        every: int = 10_000,
        on_error: Callable[[AuditError], None] | None = None,
    ) -> None:
        self.writer = writer
        self.syslog = syslog
        self.signer = signer
        self.interval = interval
        self.every = every
        self.on_error = on_error
        self._count = 0
        self._dirty = False  # a plain flag: set on every append, so no Event (it takes a lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def note_append(self) -> None:
        """Called after each append: starts the timer lazily, seals every `every` records.

        The first record of a new chain is sealed at once, so `seals.jsonl` exists as soon as
        the log has a record: the verifier takes a missing seal file as deleted.
        """
        self._dirty = True
        self._count += 1
        if self.writer.last_seq == 1:
            self._write("first")
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
        return self._write(reason)

    def _write(self, reason: str) -> dict[str, Any] | None:
        seal = seal_head(self.writer, reason=reason, signer=self.signer)
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
