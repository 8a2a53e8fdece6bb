"""Evidence store: content-addressed, scrubbed copies of configurations and device output.

Imports only the standard library, `agent.errors` and `agent.audit.redact`; never the engine or a
device library. A blob lives at `<log dir>/evidence/sha256/<hex>`, where hex is the sha256 of the
stored (scrubbed) bytes; log records reference it in fields named `*_sha256`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from agent.audit import redact
from agent.errors import AuditError

__all__ = ["EVIDENCE_DIR", "check", "path_for", "store"]

EVIDENCE_DIR = Path("evidence") / "sha256"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def path_for(log_dir: Path, digest: str) -> Path:
    """Where the blob with this sha256 lives under `log_dir`."""
    if not HEX64.match(digest):
        raise AuditError(f"evidence reference {digest[:80]!r} is not a sha256 hex digest")
    return log_dir / EVIDENCE_DIR / digest


def store(data: bytes | str, *, log_dir: Path) -> str:
    """Scrub `data` of secrets, store it once, and return the sha256 (hex) of what was stored."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    clean = redact.scrub_bytes(raw)
    digest = hashlib.sha256(clean).hexdigest()
    target = path_for(log_dir, digest)
    if target.exists():
        return digest
    try:
        target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(clean)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o440)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise AuditError(
            f"cannot store evidence in {target.parent}: {exc.strerror or type(exc).__name__}",
            hint="check that the log directory is writable and the disk is not full",
        ) from exc
    return digest


def check(log_dir: Path, digest: str) -> str | None:
    """None when the blob exists and still hashes to `digest`, else what is wrong with it."""
    if not HEX64.match(digest):
        return "is not a sha256 hex digest"
    path = log_dir / EVIDENCE_DIR / digest
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"is missing from {EVIDENCE_DIR}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if hashlib.sha256(data).hexdigest() != digest:
        return "was altered (its content no longer has this sha256)"
    return None
