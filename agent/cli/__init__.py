"""The `cordon` command line: options, a session with the daemon (or the same API in this
process), the follow loop, text renderers and one module per command group.

Kept light: importing `agent.cli.options` or a renderer must not pull in every command. The
console script `cordon = "agent.cli:main"` lands here; the group itself is `agent.cli.app`.
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """`cordon`: parse the arguments, run the command, turn a `CordonError` into an exit code."""
    from agent.cli.app import main as run  # noqa: PLC0415 - the commands load on use only

    run()
