"""The `cordon` command line: options, a session with the daemon (or the same API in this
process), the follow loop, text renderers and one module per command group.

Kept light: importing `agent.cli.options` or a renderer must not pull in every command, and the
top-level group imports a command's module only when that command runs. The console script
`cordon = "agent.cli:main"` lands here; the group itself is `agent.cli.app`.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

from agent import settings

__all__ = ["loading", "main"]

# Imported by libraries for nothing `cordon` does, and a fifth of the imports of a `cordon run`
# (#18): rich (netmiko brings it) by httpx for its own command line (`httpx._main`) and by
# structlog for pretty tracebacks of live exceptions (the audit pipeline formats them to text
# before any renderer: `format_exc_info`); trio (selenium brings it to development installs) by
# httpcore, to tell whether it runs under trio. A None entry in sys.modules makes such an import
# fail, which each of them expects; the entries are removed again when the command ends.
# `--local` no longer imports httpx (agent.api.local), so only rich is saved there; the daemon's
# commands still import httpx. invoke (and the unittest.mock it imports), by paramiko for the
# `Match exec` lines of OpenSSH client configs, which Cordon never reads (its transports are
# its own): 120 modules and ~7 MB of every process that opens an SSH session (#16, #18).
_NEVER_USED = ("httpx._main", "rich", "trio", "invoke")

# `_EXIT_GC`: the interpreter's last garbage collection, at exit, walks every object still alive
# (~0.25 s of CPU after a `cordon run`'s imports, #18) to free memory the exit frees anyway.
# Everything a command opens is closed before it returns (the service's journal and device
# sessions in `connect`, the audit trail by its own atexit close, with fsync), so what that
# collection would find is closed already (measured after a 9-device `run --local`: 2 closed
# SQLite connections, 9 closed sockets and SSH transports, the twin's topology objects): the
# objects alive when the command returns are frozen (`gc.freeze`) and that pass skips them.


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Around imports of modules, whose classes and functions live as long as the process: no
    garbage collection while they load (what they make is kept, but for a few cycles of their
    own start-up, left to the exit), and none scans them afterwards (frozen): ~0.1 s of CPU of a
    cold `cordon run --local`, where every collection of the oldest generation walked every
    class and function imported so far (#18)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
    gc.freeze()


def main() -> None:
    """`cordon`: parse the arguments, run the command, turn a `CordonError` into an exit code."""
    settings.skip_pydantic_plugins()  # no search for plugins at the first model (#18)
    blocked = [name for name in _NEVER_USED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        with loading():
            from agent.cli.app import main as run  # noqa: PLC0415 - commands load on use only
        try:
            run()
        finally:
            gc.freeze()  # nor does the one at exit: `_EXIT_GC`
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
