"""The crisis cell's page over HTTP on a loopback TCP address: routes, identity, refusals, live
updates by server-sent events.

Routes (GET and HEAD only; any other method is refused 405 and audited):
    /view               the page; `?token=T` once: checks T, sets a session cookie, redirects
    /view/events        text/event-stream: the rendered board each time it changes
    /view/state         the same content as JSON (scripts, tests)
    /view/static/NAME   the page's own CSS and JS, from the package (no data in them)

Identity is the API's (`agent.api.auth.Policy`): a bearer token, in the `Authorization` header or
exchanged once through `?token=` for a random session id in an HttpOnly, SameSite=Strict cookie
(the token itself never goes into the cookie, the page or a log). The caller must hold a role
that may `status`; the clocks and the incident timeline come from the audit report and need a
role that may `audit.report` (else the page says so). Every refusal is audited as
`access.refused`, as the API's are. Loopback addresses are served in plain HTTP; an address beyond
loopback only over TLS with client certificates, the API's own (`agent.api.tcp.server_tls`: the
daemon's certificate, the roles file's client certificates): a browser without one of them does
not get past the handshake, and then still needs its token.

Live updates: each open page's stream reads the status once a second (the incident's audit
report every `REPORT_EVERY_S`) under its caller's identity, and pushes the board when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import json
import secrets
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from agent import audit, settings
from agent.api.auth import Action, Caller, Policy, may
from agent.api.backend import Backend
from agent.api.handshake import RefusalLog, TlsSite
from agent.api.tcp import host_port
from agent.audit.redact import scrub
from agent.errors import AccessRefused, ConfigError, CordonError
from agent.view import snapshot

__all__ = [
    "COOKIE",
    "REPORT_EVERY_S",
    "SESSION_S",
    "is_loopback",
    "listen_address",
    "make_view_app",
    "start_view",
]

COOKIE = "cordon_view"
SESSION_S = 12 * 3600  # a wall screen stays signed in for a shift; then a new link is needed
MAX_SESSIONS = 256
REPORT_EVERY_S = 5.0
HEARTBEAT_S = 15.0
STATIC = ("view.css", "view.js")
_CONTENT_TYPES = {".css": "text/css", ".js": "text/javascript"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_VAR = "CORDON_VIEW_LISTEN"


# -- the listening address ---------------------------------------------------------------------


def listen_address(raw: str | None = None, *, tls: bool = False) -> tuple[str, int] | None:
    """`CORDON_VIEW_LISTEN` as (host, port), None when unset (no view). Without `tls`, loopback
    IP literals only (`127.0.0.1:8443`, `[::1]:8443`), reached on the daemon's own machine or
    through an SSH tunnel; with `tls` (the daemon has its API certificate), any IP literal of
    this host. Anything else is a `ConfigError` before any start."""
    value = settings.current().view_listen if raw is None else raw
    if not value:
        return None
    hint = f"set {_VAR} to a loopback address and port (127.0.0.1:8443 or [::1]:8443), or unset it"
    host, addr, port = host_port(value, _VAR, hint)  # the API listener's own parsing
    if not addr.is_loopback and not tls:
        raise ConfigError(
            f"{_VAR}={value!r}: {host} is not a loopback address; beyond loopback the view is "
            "served over TLS with client certificates only, and the daemon has no certificate",
            hint=hint + "; or set CORDON_API_TLS_CERT and CORDON_API_TLS_KEY (README: HA); "
            "or from another machine: ssh -L 8443:127.0.0.1:8443 <daemon host>",
        )
    return host, port


def is_loopback(host: str) -> bool:
    """Is `host` (an IP literal, as `listen_address` returns it) a loopback address?"""
    return ipaddress.ip_address(host).is_loopback


async def start_view(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Listen on host:port (over TLS with `ssl_context`, which a non-loopback address needs);
    `await runner.cleanup()` stops serving."""
    if ssl_context is None and not is_loopback(host):
        raise ConfigError(f"the view is never served beyond loopback ({host}) without TLS")
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        if ssl_context is None:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        else:  # pinned client certificates: each refused handshake audited (rate-limited)
            refusals = RefusalLog(f"view {host}:{port}")
            await TlsSite(runner, host, port, ssl_context, refusals).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"the view cannot listen on {host}:{port}: {exc.strerror}",
            hint=f"choose a free port in {_VAR}, or unset it",
        ) from None
    except BaseException:
        await runner.cleanup()
        raise
    return runner


# -- the page's content ------------------------------------------------------------------------


def _utc(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%d/%m %H:%M:%S UTC")


def _hm(iso: Any) -> str:
    """An ISO-8601 moment of the audit report as a short time."""
    if not isinstance(iso, str) or iso in ("", "-"):
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%d/%m %H:%M:%S UTC")
    except ValueError:
        return iso


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agent.view", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.filters["hm"] = _hm
    return env


def render(name: str, **context: Any) -> str:
    return _templates().get_template(name).render(**context)


def _digest(board: str) -> str:
    """Which board a page shows: a push of the same one is not applied again."""
    return hashlib.sha256(board.encode()).hexdigest()[:16]


# -- sessions ----------------------------------------------------------------------------------


@dataclass
class _Session:
    token: str
    expires: float


class _Sessions:
    """Session id -> the bearer token it was opened with, in memory only (a daemon restart signs
    every screen out). The token is checked against the roles file again at each use."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Session] = {}

    def open(self, token: str) -> str:
        now = time.monotonic()
        self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
        while len(self._by_id) >= MAX_SESSIONS:
            self._by_id.pop(next(iter(self._by_id)))
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = _Session(token, now + SESSION_S)
        return sid

    def token(self, sid: str) -> str | None:
        s = self._by_id.get(sid)
        if s is None or s.expires <= time.monotonic():
            self._by_id.pop(sid, None)
            return None
        return s.token


# -- the application ---------------------------------------------------------------------------


class _NotSignedIn(AccessRefused):
    """No credentials at all: 401 (a wrong token or role is 403)."""


class _View:
    def __init__(self, backend: Backend, policy: Policy, interval: float) -> None:
        self.backend = backend
        self.policy = policy
        self.interval = interval
        self.sessions = _Sessions()
        self.allowed_hosts: set[str] = set()
        self.closing = asyncio.Event()  # the daemon stops: every stream ends at once

    async def on_shutdown(self, _app: web.Application) -> None:
        self.closing.set()

    # -- identity

    def _token(self, request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AccessRefused("the Authorization header must be `Bearer <token>`")
            return value.strip()
        sid = request.cookies.get(COOKIE)
        if sid:
            token = self.sessions.token(sid)
            if token is None:
                raise _NotSignedIn(
                    "this screen's session has expired or the daemon was restarted",
                    hint="open the view again with the one-time link (?token=...)",
                )
            return token
        raise _NotSignedIn(
            "not signed in: the view needs a bearer token",
            hint="open /view?token=<your token> once on this screen (see README, crisis cell)",
        )

    def caller(self, request: web.Request, token: str | None = None) -> Caller:
        try:  # over TCP there is no peer uid: -1, and the token alone says who
            caller = self.policy.identify(-1, token if token is not None else self._token(request))
        except _NotSignedIn:
            raise
        except AccessRefused as err:
            raise AccessRefused(
                "the bearer token presented to the view matches no operator",
                hint=err.hint,
            ) from None
        decision = may(caller, Action.STATUS)
        if not decision.allowed:
            raise AccessRefused(
                f"refused: {decision.why}", hint="the view needs a role that may status"
            )
        return caller

    # -- content

    async def _call(self, caller: Caller, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Any:
        """A backend read in a worker thread, under the caller's identity in the audit context."""

        def bound() -> Any:
            with audit.bind(actor=caller.user, role=caller.role, via="view", uid=None):
                return fn(caller, *args, **kw)

        return await asyncio.to_thread(bound)

    async def reports(self, caller: Caller, ids: list[str]) -> dict[str, Any] | None:
        """The audit report of each open incident (clocks, timeline); None if not allowed."""
        if not may(caller, Action.AUDIT_REPORT).allowed:
            return None
        out: dict[str, Any] = {}
        for iid in ids:
            with contextlib.suppress(CordonError):  # that incident's clocks: "not available"
                # the clocks and the timeline; the page shows no chain verdict, and asks every
                # few seconds: not a whole-chain verification each time
                out[iid] = await self._call(
                    caller, self.backend.audit_report, run=None, incident=iid, verify=False
                )
        return out

    async def runs(self, caller: Caller, status: Any) -> dict[str, Any]:
        """Each open run's detail (its gates: a soak's end, zones to attest)."""
        out: dict[str, Any] = {}
        if not may(caller, Action.SHOW).allowed:
            return out
        for r in status.get("open_runs") or []:
            rid = str(r.get("run_id"))
            with contextlib.suppress(CordonError):  # finished meanwhile: shown next time
                out[rid] = await self._call(caller, self.backend.show_run, run_id=rid)
        return out

    def build(
        self,
        caller: Caller,
        status: Any,
        reports: dict[str, Any] | None,
        runs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        note = None
        if reports is None:
            note = (
                f"{caller.user} ({caller.role}) may not read the audit report: "
                "clocks and timeline not shown"
            )
        return snapshot.build(status, reports, reports_note=note, runs=runs, now=time.time())

    async def full(self, caller: Caller) -> dict[str, Any]:
        status = await self._call(caller, self.backend.status)
        ids = [str(i.get("incident_id")) for i in status.get("incidents") or []]
        reports = await self.reports(caller, ids)
        return self.build(caller, status, reports, await self.runs(caller, status))

    # -- handlers

    async def page(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token")
        if token is not None:
            self.caller(request, token)  # refused here if it matches no one
            sid = self.sessions.open(token)
            resp = web.Response(status=303, headers={"Location": "/view"})
            resp.set_cookie(
                COOKIE,
                sid,
                max_age=SESSION_S,
                path="/view",
                httponly=True,
                samesite="Strict",
                secure=request.secure,  # over TLS (beyond loopback): sent back over TLS only
            )
            return resp
        caller = self.caller(request)
        data = await self.full(caller)
        body = render(
            "view.html.j2",
            d=data,
            caller=caller,
            digest=_digest(render("board.html.j2", d=data, caller=caller)),
        )
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def state(self, request: web.Request) -> web.StreamResponse:
        caller = self.caller(request)
        return web.json_response(await self.full(caller))

    async def events(self, request: web.Request) -> web.StreamResponse:
        caller = self.caller(request)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the screen went away
            await self._stream(request, caller, resp)
        return resp

    async def _stream(self, request: web.Request, caller: Caller, resp: web.StreamResponse) -> None:
        """Push the board each time it changes, until the screen goes, its session ends or the
        daemon stops; a state that cannot be read is said (`stale`), never left looking live."""
        last = None
        reports: dict[str, Any] | None = {}
        report_at = -REPORT_EVERY_S
        beat_at = time.monotonic()
        while True:
            try:
                self.caller(request)  # the session expires, the token may be gone
            except AccessRefused:
                await resp.write(b"event: signed-out\ndata: {}\n\n")
                return
            try:
                status = await self._call(caller, self.backend.status)
            except (CordonError, sqlite3.Error) as exc:  # the journal is locked, gone...
                why = exc.message if isinstance(exc, CordonError) else str(exc)
                payload = json.dumps({"why": scrub(why)[:300]})
                await resp.write(f"event: stale\ndata: {payload}\n\n".encode())
                last = None
                if await self._pause():
                    return
                continue
            ids = [str(i.get("incident_id")) for i in status.get("incidents") or []]
            if ids and time.monotonic() - report_at >= REPORT_EVERY_S:
                reports = await self.reports(caller, ids)
                report_at = time.monotonic()
            data = self.build(caller, status, reports, await self.runs(caller, status))
            board = render("board.html.j2", d=data, caller=caller)
            if board != last:
                payload = json.dumps({"html": board, "digest": _digest(board), "now": data["now"]})
                await resp.write(f"event: board\ndata: {payload}\n\n".encode())
                last, beat_at = board, time.monotonic()
            elif time.monotonic() - beat_at >= HEARTBEAT_S:
                await resp.write(f"event: tick\ndata: {time.time()}\n\n".encode())
                beat_at = time.monotonic()
            if await self._pause():
                return

    async def _pause(self) -> bool:
        """Wait one interval; True when the daemon is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), self.interval)
        return self.closing.is_set()

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        text = resources.files("agent.view").joinpath("static", name).read_text("utf-8")
        ctype = _CONTENT_TYPES[Path(name).suffix]
        return web.Response(text=text, content_type=ctype, charset="utf-8")

    # -- refusals

    def refusal(self, request: web.Request, err: CordonError, status: int) -> web.Response:
        action = "view" if status in (401, 403) else f"{request.method} {request.path}"[:200]
        with audit.bind(actor=None, role=None, via="view", uid=None):
            audit.get_logger().warning(
                "access.refused",
                action=action,
                why=scrub(err.message),
                error="AccessRefused",
                remote=request.remote,
                outcome="refused",
            )
        body = render("refused.html.j2", status=status, message=scrub(err.message), hint=err.hint)
        resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="cordon view"'
        return resp

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """GET/HEAD only, the expected Host only, every refusal audited, headers on all."""
        try:
            if request.method not in ("GET", "HEAD"):
                resp: web.StreamResponse = self.refusal(
                    request,
                    AccessRefused(
                        f"method not allowed: {request.method} {request.path[:200]}: "
                        "the view is read-only, nothing can be done from it",
                        hint="act with the cordon command line",
                    ),
                    405,
                )
                resp.headers["Allow"] = "GET, HEAD"
            elif self.allowed_hosts and request.host not in self.allowed_hosts:
                resp = self.refusal(
                    request,
                    AccessRefused(f"unexpected Host header {request.host[:100]!r}"),
                    403,
                )
            else:
                resp = await handler(request)
        except _NotSignedIn as err:
            resp = self.refusal(request, err, 401)
        except AccessRefused as err:
            resp = self.refusal(request, err, 403)
        except web.HTTPNotFound:
            resp = self.refusal(request, AccessRefused(f"no such page: {request.path[:200]}"), 404)
        for k, v in _SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp


def make_view_app(
    backend: Backend,
    policy: Policy,
    *,
    interval: float = 1.0,
    listen: tuple[str, int] | None = None,
) -> web.Application:
    """The view as an aiohttp application. `listen`: the loopback address served, whose Host
    header (and localhost's) alone is accepted (a page of another site rebound to 127.0.0.1 is
    not); None over TLS, where the pinned certificates stand in for that check."""
    view = _View(backend, policy, interval)
    if listen is not None:
        host, port = listen
        shown = f"[{host}]" if ":" in host else host
        view.allowed_hosts = {f"{shown}:{port}", f"localhost:{port}"}
    app = web.Application(middlewares=[view.guard])
    app.on_shutdown.append(view.on_shutdown)
    app.router.add_get("/view", view.page)
    app.router.add_get("/view/state", view.state)
    app.router.add_get("/view/events", view.events)
    app.router.add_get("/view/static/{name}", view.static)
    return app
