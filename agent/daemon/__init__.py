"""`cordon daemon`, the process: `main` is its composition root (it builds the service, the API
and the roles policy, and picks the flow sources: the devices', and the twin's prober when a
twin is up). The API it serves
lives in `agent.api`, the application behind it in `agent.service`.

Kept light on purpose (the CLI imports it for the socket's name): imports `agent.settings` only;
`agent.daemon.main` is imported when a daemon starts; `agent.daemon.lock` (the state
directory's lock and the daemon's state file) when a command holds the directory or reads it.
"""

from __future__ import annotations

from agent import settings

__all__ = ["SOCKET_NAME"]

SOCKET_NAME = settings.SOCKET_NAME
