"""The twin's own journal: every namespace, root-namespace link, file and process it made, written
before each is made, so `lab down` (even after a crash) undoes exactly that and nothing else.

Imports only the standard library, `agent.errors` and `agent.settings`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent import settings
from agent.errors import LabError

DEFAULT_LAB = "cdn"  # the twin's name when none is given (one twin per machine)


def state_root() -> Path:
    """Where the twins' journals live (`$CORDON_LAB_STATE`, default /run/cordon-lab)."""
    return settings.current().lab_state


@dataclass
class LabState:
    lab: str
    inventory: str
    phase: str = "building"  # building -> up -> stopping
    namespaces: list[str] = field(default_factory=list)
    root_links: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    procs: list[dict[str, Any]] = field(default_factory=list)  # daemons.DaemonProc.as_dict()
    started_at: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return state_root() / self.lab

    @property
    def path(self) -> Path:
        return self.dir / "state.json"

    def save(self) -> None:
        """Write atomically (tmp + rename + fsync): a crash leaves the old or the new state."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps(asdict(self), indent=1)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, lab: str) -> LabState | None:
        path = state_root() / lab / "state.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"twin state {path} is unreadable: {exc}",
                hint="inspect it; `cordon lab down --force` removes what it lists",
            ) from exc
        return cls(**raw)
