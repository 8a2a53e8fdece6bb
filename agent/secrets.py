"""Resolves secret references ('env:NAME', 'file:PATH') at the moment of use, and registers every
value with the audit scrubber so it can never reach a log line, output or exception.

Imports only `agent.errors` and the audit scrubber (a leaf module).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.audit.redact import register_secret
from agent.errors import SecretError


def ref_path(ref: str, base_dir: Path) -> Path:
    """The file a 'file:' reference points to (relative paths resolve beside the inventory)."""
    scheme, _, rest = ref.partition(":")
    if scheme != "file":
        raise SecretError(f"secret reference {ref!r} is not a file reference")
    path = Path(os.path.expanduser(rest))
    return path if path.is_absolute() else base_dir / path


def check_file(path: Path, *, what: str) -> None:
    """Refuse a secret file that is missing, not a regular file, not ours, or readable by others."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretError(
            f"{what}: secret file {path} does not exist",
            hint="create it (mode 0600), or run `cordon lab up` for the twin",
        ) from None
    except OSError as exc:
        raise SecretError(f"{what}: cannot stat secret file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretError(f"{what}: secret file {path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise SecretError(
            f"{what}: secret file {path} is owned by uid {st.st_uid}, not by us "
            f"(uid {os.geteuid()})"
        )
    if st.st_mode & 0o077:
        raise SecretError(
            f"{what}: secret file {path} has mode {stat.S_IMODE(st.st_mode):04o}; "
            "it must be readable by its owner only",
            hint=f"chmod 600 {path}",
        )


def resolve(ref: str, *, base_dir: Path, what: str) -> str:
    """The secret value behind `ref`; `what` names its use for error messages (never the value)."""
    scheme, sep, rest = ref.partition(":")
    if scheme == "env" and sep:
        value = os.environ.get(rest)
        if value is None or value == "":
            raise SecretError(f"{what}: environment variable {rest} is not set or empty")
    elif scheme == "file" and sep:
        path = ref_path(ref, base_dir)
        check_file(path, what=what)
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(
                f"{what}: cannot read secret file {path}: {type(exc).__name__}"
            ) from None
        if not value:
            raise SecretError(f"{what}: secret file {path} is empty")
    else:
        raise SecretError(f"{what}: {ref!r} is not a secret reference ('env:NAME' or 'file:PATH')")
    register_secret(value)
    return value
