"""`cordon daemon`'s API: identity and roles (`auth`), the HTTP routes on a Unix socket (`api`),
the engine behind them (`backend`, a Protocol), the wire models (`models`), the CLI's `client`.

Kept light on purpose: importing `agent.daemon.client` must not pull in aiohttp. The engine, the
drivers and the twin are never imported here; the backend that drives them is given to `make_app`.

    from agent.daemon.api import make_app, serve      # the daemon side (aiohttp)
    from agent.daemon.auth import Policy, authorize   # who is calling, and may they
    from agent.daemon.client import Client            # the CLI side (httpx)
"""

from __future__ import annotations

from pathlib import Path

from agent import settings

__all__ = ["SOCKET_NAME", "default_socket_path"]

SOCKET_NAME = settings.SOCKET_NAME


def default_socket_path() -> Path:
    """`$CORDON_STATE_DIR/cordon.sock`, the state directory defaulting to `.state`."""
    return settings.current().socket_path
