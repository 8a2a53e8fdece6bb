"""The API in this process, for `cordon ... --local`: `LocalClient` has the daemon client's
methods (`agent.api.client.Routes`) and hands each request to the API's rules
(`agent.api.orders`: identity, role, validation, the run's policy, the audit of refusals, errors
as the daemon's JSON) over the `Backend` directly: no socket, no HTTP server, no HTTP client.

The caller is this process's effective uid, or the bearer token given (--token), as the daemon
would know it on its socket. Requests and answers go through JSON as on the wire, errors through
the daemon's error body (scrubbed of secrets) back into the same `agent.errors` types.

Imports `agent.api.{auth,backend,client,orders}`, `agent.wire` and `agent.errors`; never aiohttp
or httpx (#18).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote

from agent import __version__
from agent.api.auth import Policy
from agent.api.backend import Backend
from agent.api.client import Routes, _check_token, rebuild
from agent.api.orders import ROUTES, Act, Orders, Request, error_body, internal_error
from agent.errors import CordonError, DaemonError, NotFound
from agent.wire import JSON, ErrorInfo

__all__ = ["LocalClient"]


class _Query(dict[str, str]):
    """Query parameters as the routes read them (each given once: `getall` is one value)."""

    def getall(self, key: str) -> list[str]:
        return [self[key]]


def _text(value: Any) -> str:
    """A query parameter's value as an HTTP client sends it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LocalClient(Routes):
    """`LocalClient(backend, policy, token=None)`: the API's routes, answered in this process."""

    def __init__(self, backend: Backend, policy: Policy, *, token: str | None = None) -> None:
        self.orders = Orders(backend, policy)
        self.where = "this process (--local)"
        self.notes: list[str] = []  # nothing is redirected in this process
        self._token = _check_token(token) if token is not None else None

    def __repr__(self) -> str:
        return "LocalClient()"

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> JSON:
        if (method, url) == ("GET", "/health"):
            return {"ok": True, "version": __version__}
        raw = b"" if body is None else _json({k: v for k, v in body.items() if v is not None})
        query = _Query({k: _text(v) for k, v in (params or {}).items() if v is not None})
        path, rid = _route(url)
        try:
            found = ROUTES.get((method, path))
            if found is None:  # a client method without its route: a bug here, said as one
                raise NotFound(f"no such API route: {method} {path}")
            action, route = found
            act = Act(action)
            caller = self.orders.identify(os.geteuid(), lambda: self._token, action)
            with self.orders.acting(caller, act):
                self.orders.check(caller, action)
                answer = route(self.orders, caller, Request(raw, query, rid), act)
            result = json.loads(_json(answer))
        except CordonError as err:
            raise _as_sent(err) from None
        except Exception as exc:  # what the daemon answers as an internal error
            failure, _status = internal_error(exc, f"{method} /v1{path}")
            raise _as_sent(failure) from None
        if not isinstance(result, dict):
            raise DaemonError(f"{self.where} answered {method} /v1{path} without an object")
        return result


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _route(url: str) -> tuple[str, str]:
    """(the route's path, with `{run_id}` for the run's segment; the run id, or "")."""
    parts = url.split("/")  # "", "runs", RUN_ID, ACTION
    if len(parts) >= 3 and parts[1] == "runs":
        return "/".join(["", "runs", "{run_id}", *parts[3:]]), unquote(parts[2])
    return url, ""


def _as_sent(err: CordonError) -> CordonError:
    """`err` as the daemon's client would raise it: through the error body, scrubbed."""
    return rebuild(ErrorInfo.model_validate(error_body(err)["error"]))
