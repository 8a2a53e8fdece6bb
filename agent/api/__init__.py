"""The daemon's API: the HTTP routes on a Unix socket (`http`, aiohttp), the rules every route
applies whatever carries it (`orders`), who is calling and may they (`auth`), what the routes
call (`backend`, a Protocol the service satisfies), the CLI's client (`client`, httpx) and the
same API answered in the CLI's process for `--local` (`local`, neither aiohttp nor httpx). The
wire models both sides share are `agent.wire`.

The API may import the service layer and below (`agent.wire`, `agent.audit`, `agent.errors`...),
never the daemon process, the CLI or the twin. Kept light on purpose: importing
`agent.api.client` must not pull in aiohttp; this module imports `agent.settings` only.

    from agent.api.http import make_app, serve      # the daemon side (aiohttp)
    from agent.api.auth import Policy, authorize    # who is calling, and may they
    from agent.api.client import Client             # the CLI side (httpx)
    from agent.api.local import LocalClient         # the CLI's --local (in this process)
"""

from __future__ import annotations

from pathlib import Path

from agent import settings

__all__ = ["default_socket_path"]


def default_socket_path() -> Path:
    """`$CORDON_STATE_DIR/cordon.sock`, the state directory defaulting to `.state`."""
    return settings.current().socket_path
