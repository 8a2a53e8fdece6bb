"""The crisis cell's live view: one read-only page for a wall screen, served by the daemon on a
loopback TCP address when `CORDON_VIEW_LISTEN` is set (browsers cannot speak to a Unix socket).

    snapshot   pure: the API's status (and an incident's audit report) -> what the page shows
    server     aiohttp: the page, its assets, the server-sent events; the API's identities and
               roles (bearer token), every refusal audited; GET only

Imports aiohttp, Jinja2, `agent.api.{auth,backend}`, `agent.audit`, `agent.settings` and
`agent.errors`; never the service, the engine or a driver (the `Backend` is given to
`make_view_app`). Sits above `agent.api` in the import layers; the daemon starts it.
"""

from agent.view.server import listen_address, make_view_app, start_view

__all__ = ["listen_address", "make_view_app", "start_view"]
