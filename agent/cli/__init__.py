"""The `cordon` command line: options, a session with the daemon (or the same API in this
process), the follow loop, text renderers and one module per command group.

Kept light: importing `agent.cli.options` or a renderer must not pull in every command, and the
top-level group imports a command's module only when that command runs. The console script
`cordon = "agent.cli:main"` lands here; the group itself is `agent.cli.app`.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """`cordon`: parse the arguments, run the command, turn a `CordonError` into an exit code."""
    # httpx's package imports its own command line (`httpx._main`: rich, pygments) whenever
    # rich is installed (netmiko brings it); `cordon` never uses it, and it was a sixth of the
    # imports of `cordon run` (#18). A None entry makes that import fail, which httpx expects.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    from agent.cli.app import main as run  # noqa: PLC0415 - the commands load on use only

    run()
