"""Which playbook a name means, and what authorization must know of it before a run starts.

Owns the rule that a playbook named in a request is always `playbooks/<name>.yaml` under the
daemon's working directory, and `PlaybookMeta` (the flags the API's policy reads, returned by
`Service.playbook_meta`). Imports `agent.errors` only: the API imports it (its `Backend`
Protocol returns a `PlaybookMeta`) without pulling in the service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.errors import Issue, PlaybookError

__all__ = ["PLAYBOOK_DIR", "PlaybookMeta", "playbook_path"]

PLAYBOOK_DIR = Path("playbooks")
_PLAYBOOK_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def playbook_path(name: str) -> Path:
    """The file of the playbook `name`: always `playbooks/<name>.yaml` under the daemon's working
    directory, never a path of the caller's choosing (a name like `logs` is not the `logs/`
    folder). A name that is not one, or no such file: `PlaybookError` (exit 2)."""
    path = PLAYBOOK_DIR / f"{name}.yaml"
    if not _PLAYBOOK_NAME.match(name):
        raise PlaybookError([Issue(str(path), "", f"{name!r} is not a playbook name")])
    if not path.is_file():
        raise PlaybookError([Issue(str(path), "", "no such playbook file")])
    return path


@dataclass(frozen=True)
class PlaybookMeta:
    """What authorization needs to know about a playbook before a run starts."""

    emergency: bool
    approval: Literal["none", "two_person"]
