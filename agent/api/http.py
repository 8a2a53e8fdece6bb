"""The daemon's HTTP API on a Unix socket (aiohttp), and over TCP with TLS and client
certificates (`agent.api.tcp`): routes, caller identity, authorization, the audit of every
refusal, and errors as JSON with the exit code the CLI uses.

Imports aiohttp, `agent.api.{auth,backend,orders}` (the rules of each route, shared with
`--local`'s `agent.api.local`), `agent.audit` and `agent.errors`; never
the service, the engine or a driver (the `Backend` is given to `make_app`), the daemon process or
the twin.

Every route is under /v1 and answers JSON. An error is
`{"error": {"type", "message", "hint", "exit_code"}}` (plus `issues` for input files, `device`
and `operation` for device errors): never a traceback, every string scrubbed of known secrets.
A request is handled in this order, and each refusal is logged as `access.refused`:
identify (peer uid, or bearer token; over TLS the client certificate) -> role may do the
action -> validate the request -> (for a run: the playbook's flags, then the full policy) ->
the backend, in a worker thread, with `actor`, `role`, `via`, `uid` bound into the audit context.

Several daemons on one PostgreSQL state (`directory` given): a standby refuses an order with
`StandbyError` (HTTP 421), the body's `error.active` naming the active node, its epoch, its API
URL and certificate pin (from `cordon_nodes`; null when no node is active): the client follows it
once. Every answer says who answered: headers `Cordon-Node`, `Cordon-Role` (active or standby)
and `Cordon-Active` (the active node, or none).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from agent import __version__, audit, mtls
from agent.api import default_socket_path
from agent.api.auth import Action, Caller, Policy, user_name
from agent.api.backend import Backend
from agent.api.orders import (
    MAX_WAIT_S,
    ROUTES,
    Act,
    Orders,
    Request,
    Route,
    error_body,
    http_status,
    internal_error,
    refused,
    wait_query,
)
from agent.errors import (
    AccessRefused,
    ConfigError,
    CordonError,
    DaemonError,
    NotFound,
    StandbyError,
)

if TYPE_CHECKING:  # the daemon gives it: this module never opens the state database
    from agent.api.nodes import Directory

__all__ = [
    "MAX_BODY",
    "MAX_WAIT_S",
    "error_body",
    "http_status",
    "make_app",
    "serve",
    "start",
    "wait_query",
]

MAX_BODY = 64 * 1024  # a request is a few names and reasons; anything bigger is refused (413)
ROLE_HEADER_S = 2.0  # the most the role headers may delay an answer (the database away)
SOCKET_MODE = 0o660
DIR_MODE = 0o750

_log = logging.getLogger("cordon.daemon")
_T = TypeVar("_T")


# -- errors as JSON (`agent.api.orders`) -------------------------------------------------------


def _error_response(err: CordonError, status: int | None = None) -> web.Response:
    return web.json_response(error_body(err), status=status or http_status(err))


def _from_http(exc: web.HTTPException, request: web.Request) -> CordonError:
    """aiohttp's own refusals (no route, wrong method, body too big) as Cordon errors."""
    where = f"{request.method} {request.path}"[:200]
    if exc.status == 413:
        return ConfigError(
            f"request body too large: at most {MAX_BODY} bytes",
            hint="nothing was changed; a request names playbooks, sites and reasons only",
        )
    if exc.status == 404:
        return NotFound(f"no such API route: {where}", hint="check the client's version")
    if exc.status == 405:
        return ConfigError(f"method not allowed: {where}", hint="check the client's version")
    if exc.status < 500:
        return ConfigError(f"bad request: {where}: {exc.reason}")
    return DaemonError(f"the daemon failed on {where}: HTTP {exc.status}")


# -- identity ----------------------------------------------------------------------------------

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _peer_uid(request: web.Request) -> int:
    """The uid of the process at the other end of the Unix socket (SO_PEERCRED)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX:
        raise AccessRefused("the caller's credentials are unknown: connect over the Unix socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


def _tls_peer(request: web.Request) -> tuple[bool, str | None]:
    """(over TLS?, the pin of the client certificate the handshake proved, if any)."""
    transport = request.transport
    ssl_obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_obj is None:
        return False, None
    return True, mtls.peer_pin(ssl_obj)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AccessRefused(
            "the Authorization header must be `Bearer <token>`",
            hint="or send no Authorization header to be known by your OS user",
        )
    return value.strip()


# -- the routes --------------------------------------------------------------------------------


class _Api:
    def __init__(
        self, backend: Backend, policy: Policy, directory: Directory | None = None
    ) -> None:
        self.orders = Orders(backend, policy)
        self.policy = policy
        self.directory = directory
        self.waits: ThreadPoolExecutor | None = None  # the long-polls' threads, made on use

    # -- plumbing

    def endpoint(self, action: str, route: Route) -> Callable[[web.Request], Awaitable[Any]]:
        """Identify the caller, then the API's rules (`agent.api.orders`): the role check, the
        request read, the route in a worker thread; answer JSON."""
        waiting = action == Action.SHOW  # a long-poll: on the long-polls' own threads (#18)

        async def handler(request: web.Request) -> web.StreamResponse:
            act = Act(action)
            caller = self._identify(request, action)
            with self.orders.acting(caller, act):
                self.orders.check(caller, action)
                try:
                    body = await request.read() if request.method == "POST" else b""
                except web.HTTPException as exc:  # the body was too large, for one
                    refused(act.action, _from_http(exc, request))
                    raise
                req = Request(body, request.query, request.match_info.get("run_id", ""))
                call = self.call_waiting if waiting else self.call
                result = await call(route, self.orders, caller, req, act)
            return web.json_response(result)

        return handler

    def _identify(self, request: web.Request, action: str) -> Caller:
        """The caller: by client certificate over TLS, else by peer uid or bearer token; a
        refusal is audited here."""
        tls, pin = _tls_peer(request)
        if tls:
            try:
                return self.policy.identify_certificate(pin, _bearer(request))
            except AccessRefused as err:
                who = self.policy.certificates.get(pin) if pin else None
                with audit.bind(actor=who, role=None, via="certificate", uid=None, pin=pin):
                    refused(action, err)
                raise
        return self.orders.identify(_peer_uid(request), lambda: _bearer(request), action)

    async def _standby(self, err: StandbyError) -> web.Response:
        """A standby's refusal, with where the active node is (the client follows it once)."""
        body = error_body(err)
        active = None
        if self.directory is not None:
            with contextlib.suppress(CordonError):  # the database away: no address to give
                active = await asyncio.to_thread(self.directory.active, fresh=True)
        info = body["error"]
        info["active"] = active.as_dict() if active is not None else None
        if active is None:
            info["message"] = f"{info['message']}; no node holds the active lease now"
        elif active.url is not None:
            info["message"] = f"{info['message']}; its API: {active.url}"
        return web.json_response(body, status=http_status(err))

    async def who_answers(self, _request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: say which node answered and whether it is the active one."""
        if self.directory is None:
            return
        try:  # never holds an answer up for long: the database may be restarting
            active = await asyncio.wait_for(
                asyncio.to_thread(self.directory.active), timeout=ROLE_HEADER_S
            )
        except (CordonError, TimeoutError):
            return  # the database is away: the answer's own content says what it can
        response.headers["Cordon-Node"] = self.directory.node
        mine = active is not None and active.node == self.directory.node
        response.headers["Cordon-Role"] = "active" if mine else "standby"
        response.headers["Cordon-Active"] = active.node if active is not None else "none"
        if active is not None and active.url is not None and not mine:
            response.headers["Cordon-Active-Url"] = active.url

    @web.middleware
    async def errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every failure becomes a JSON error; an unknown route is audited as a refusal."""
        try:
            return await handler(request)
        except StandbyError as err:
            return await self._standby(err)
        except CordonError as err:
            return _error_response(err)
        except web.HTTPException as exc:
            refusal = _from_http(exc, request)
            if request.match_info.http_exception is not None:
                self._refused_unrouted(request, refusal)
            return _error_response(refusal, exc.status)
        except Exception as exc:
            failure, status = internal_error(exc, f"{request.method} {request.path}")
            return _error_response(failure, status)

    def _refused_unrouted(self, request: web.Request, err: CordonError) -> None:
        action = f"{request.method} {request.path}"[:200]
        who: dict[str, Any] = {"actor": None, "role": None, "via": None, "uid": None}
        tls, pin = _tls_peer(request)
        if tls:
            user = self.policy.certificates.get(pin) if pin else None
            who.update(actor=user, via="certificate", pin=pin)
            with audit.bind(**who):
                refused(action, err)
            return
        try:
            who["uid"] = uid = _peer_uid(request)
            who["actor"] = user_name(uid)
            caller = self.policy.identify(uid, _bearer(request))
            who.update(actor=caller.user, role=caller.role, via=caller.via)
        except AccessRefused:
            pass  # audited as whoever the socket says, or nobody known
        with audit.bind(**who):
            refused(action, err)

    async def call(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """Run a backend method in a worker thread; the audit context goes with it."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    async def call_waiting(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """`call` on the long-polls' own threads: a reader waiting for a run to change never
        holds one of the threads every other request needs (#18)."""
        if self.waits is None:
            self.waits = ThreadPoolExecutor(MAX_LONG_POLLS, thread_name_prefix="cordon-wait")
        ctx = contextvars.copy_context()
        call = functools.partial(ctx.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.waits, call)

    # -- handlers

    async def health(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "version": __version__})


MAX_LONG_POLLS = 64  # long-polls waiting at once; more queue behind them (other requests do not)


def make_app(
    backend: Backend, policy: Policy, *, directory: Directory | None = None
) -> web.Application:
    """The API as an aiohttp application; serve it with `serve` (or `start`), and over TCP
    with `agent.api.tcp.start_tcp`. `directory`: several daemons share the state (standby
    redirects, the role headers)."""
    api = _Api(backend, policy, directory)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[api.errors])
    app.on_response_prepare.append(api.who_answers)
    app.router.add_get("/v1/health", api.health)
    for (method, path), (action, route) in ROUTES.items():
        app.router.add_route(method, f"/v1{path}", api.endpoint(action, route))

    async def stop_waits(_app: web.Application) -> None:
        if api.waits is not None:
            api.waits.shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(stop_waits)
    return app


# -- serving on a Unix socket ------------------------------------------------------------------


def _gid(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    import grp  # noqa: PLC0415  (Unix only, like the rest of the daemon)

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"socket group {group!r} does not exist") from None


def _prepare_dir(directory: Path, gid: int | None) -> None:
    """Create the socket's directory 0750 (group `gid`); refuse one anyone may write into."""
    if not directory.exists():
        directory.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask
        if gid is not None:
            os.chown(directory, -1, gid)
        return
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise DaemonError(f"cannot serve in {directory}: not a directory")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise DaemonError(
            f"cannot serve in {directory}: anyone may write into it and replace the socket",
            hint="choose a socket path in a directory of the daemon's own (the state directory)",
        )


def _clear_stale(path: Path) -> None:
    """Remove a socket left by a daemon that died; refuse to take over a live one."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(
            f"cannot serve at {path}: it exists and is not a socket",
            hint="move it away, or choose another socket path",
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
            return
        except OSError as exc:
            raise DaemonError(f"cannot check the socket at {path}: {exc.strerror}") from None
    raise DaemonError(
        f"a daemon is already listening at {path}",
        hint="stop it first: one daemon per state directory",
    )


async def start(
    app: web.Application, path: Path | str | None = None, *, group: str | int | None = None
) -> web.AppRunner:
    """Listen on the Unix socket `path` (default `default_socket_path()`), mode 0660.

    `group`: the group whose members may connect (socket, and the directory if created here).
    Returns the runner: `await runner.cleanup()` stops serving (`serve` does it for you).
    """
    sock_path = Path(path) if path is not None else default_socket_path()
    gid = _gid(group)
    _prepare_dir(sock_path.parent, gid)
    _clear_stale(sock_path)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.UnixSite(runner, str(sock_path)).start()
        os.chmod(sock_path, SOCKET_MODE)
        if gid is not None:
            os.chown(sock_path, -1, gid)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve(
    app: web.Application,
    path: Path | str | None = None,
    *,
    group: str | int | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` on the Unix socket `path` until `stop` is set (or the task is cancelled),
    then close every connection and remove the socket."""
    sock_path = Path(path) if path is not None else default_socket_path()
    runner = await start(app, sock_path, group=group)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
        if sock_path.is_socket():
            sock_path.unlink()
