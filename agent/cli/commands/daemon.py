"""`cordon daemon`: run the daemon in the foreground (the composition root is
`agent.daemon.main`; this only reads the options).

Imports click, `agent.settings` and `agent.daemon` (names); when the command runs,
`agent.daemon.main` and the default paths of the roles file (`agent.api.auth`) and the inventory.
"""

from __future__ import annotations

from pathlib import Path

import click

from agent import settings
from agent.daemon import SOCKET_NAME

__all__ = ["daemon_cmd"]


@click.command("daemon")
@click.option(
    "--inventory",
    "-i",
    "inventory_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Inventory (default: $CORDON_INVENTORY or the example).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=lambda: settings.current().state_dir,
    show_default=".state",
    help="Journal, job store, health (default: $CORDON_STATE_DIR).",
)
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    default=None,
    help="Unix socket of the API (default: <state-dir>/cordon.sock).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between drift polls of every device; 0: no polling.",
)
@click.option(
    "--roles",
    type=click.Path(path_type=Path),
    default=None,
    help="Roles file (default: $CORDON_ROLES or inventory/roles.yaml).",
)
@click.option("--socket-group", default=None, help="Group whose members may use the socket.")
def daemon_cmd(
    inventory_path: Path | None,
    state_dir: Path,
    socket: Path | None,
    poll_interval: float,
    roles: Path | None,
    socket_group: str | None,
) -> None:
    """Run the daemon in the foreground: the API on a Unix socket, runs with their timed gates
    (soaks, approvals) across restarts, drift polling. Stops cleanly on SIGTERM or SIGINT."""
    from agent.api.auth import default_roles_path  # noqa: PLC0415
    from agent.daemon.main import DaemonConfig, run  # noqa: PLC0415
    from agent.inventory import default_path  # noqa: PLC0415

    state = Path(state_dir)
    run(
        DaemonConfig(
            inventory=(inventory_path or default_path()).absolute(),
            state_dir=state.absolute(),
            socket=(socket or state / SOCKET_NAME).absolute(),
            roles=(roles or default_roles_path()).absolute(),
            poll_interval=poll_interval,
            group=socket_group,
        )
    )
