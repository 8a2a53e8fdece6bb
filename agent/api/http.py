"""The daemon's HTTP API on a Unix socket (aiohttp), and over TCP with TLS and client
certificates (`agent.api.tcp`): routes, caller identity, authorization, the audit of every
refusal, and errors as JSON with the exit code the CLI uses.

Imports aiohttp, `agent.api.{auth,backend}`, `agent.wire`, `agent.audit` and `agent.errors`; never
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
import re
import socket
import sqlite3
import stat
import struct
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from agent import __version__, audit, mtls
from agent.api import default_socket_path
from agent.api.auth import GRANTS, Action, Caller, Decision, Policy, authorize, may, user_name
from agent.api.backend import Backend
from agent.audit.redact import scrub
from agent.errors import (
    AccessRefused,
    ApprovalError,
    AuditError,
    ConfigError,
    CordonError,
    DaemonError,
    DeviceError,
    InventoryError,
    LabError,
    NotFound,
    PlanError,
    PlaybookError,
    RunError,
    SecretError,
    StandbyError,
)
from agent.wire import (
    JSON,
    ApproveRequest,
    AttestRequest,
    AuditReportQuery,
    IncidentRequest,
    NotifyRequest,
    PlanRequest,
    RollbackRequest,
    RunRequest,
    RunsQuery,
    parse_body,
    parse_query,
    run_id,
)

if TYPE_CHECKING:  # the daemon gives it: this module never opens the state database
    from agent.api.nodes import Directory

__all__ = ["MAX_BODY", "error_body", "http_status", "make_app", "serve", "start"]

MAX_BODY = 64 * 1024  # a request is a few names and reasons; anything bigger is refused (413)
ROLE_HEADER_S = 2.0  # the most the role headers may delay an answer (the database away)
SOCKET_MODE = 0o660
DIR_MODE = 0o750

_log = logging.getLogger("cordon.daemon")
_T = TypeVar("_T")

# -- errors as JSON ----------------------------------------------------------------------------

# First match wins: subclasses before their bases.
_STATUS: tuple[tuple[type[CordonError], int], ...] = (
    (NotFound, 404),
    (InventoryError, 422),
    (PlaybookError, 422),
    (SecretError, 500),  # the daemon's own credentials: not the caller's input
    (ConfigError, 400),
    (AccessRefused, 403),
    (ApprovalError, 409),
    (StandbyError, 421),  # misdirected: the active node's address is in the body
    (DaemonError, 400),
    (PlanError, 422),
    (RunError, 409),  # refused (includes LockError: the site is held by another run)
    (DeviceError, 502),
    (AuditError, 500),
    (LabError, 500),
)


def http_status(err: CordonError) -> int:
    """The HTTP status of a `CordonError` (the exit code travels in the body)."""
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_body(err: CordonError) -> JSON:
    """The JSON error body for `err`, scrubbed of every registered secret."""
    info: JSON = {
        "type": type(err).__name__,
        "message": scrub(err.message),
        "hint": scrub(err.hint) if err.hint else None,
        "exit_code": err.exit_code,
    }
    if isinstance(err, InventoryError | PlaybookError):
        info["issues"] = [
            {k: scrub(v) if isinstance(v, str) else v for k, v in i.as_dict().items()}
            for i in err.issues
        ]
    if isinstance(err, DeviceError):
        info["device"] = err.device
        info["operation"] = err.operation
    return {"error": info}


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


def _is_refusal(err: CordonError) -> bool:
    """Refused requests, audited as `access.refused`; engine failures are the engine's to log."""
    if isinstance(err, SecretError):
        return False
    return isinstance(err, AccessRefused | ApprovalError | ConfigError)


def _refused(action: str, err: CordonError) -> None:
    audit.get_logger().warning(
        "access.refused",
        action=action,
        why=err.message,
        error=type(err).__name__,
        outcome="refused",
    )


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

Endpoint = Callable[[web.Request, Caller, "_Act"], Awaitable[JSON]]


class _Act:
    """The action being handled; an endpoint may narrow it (`incident` -> `incident.open`)."""

    def __init__(self, action: str) -> None:
        self.action = action


class _Api:
    def __init__(
        self, backend: Backend, policy: Policy, directory: Directory | None = None
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.directory = directory
        self.waits: ThreadPoolExecutor | None = None  # the long-polls' threads, made on use

    # -- plumbing

    def endpoint(self, action: str, fn: Endpoint) -> Callable[[web.Request], Awaitable[Any]]:
        """Identify the caller, bind them into the audit context, audit a refusal, answer JSON."""

        async def handler(request: web.Request) -> web.StreamResponse:
            act = _Act(action)
            caller = self._identify(request, action)
            with audit.bind(actor=caller.user, role=caller.role, via=caller.via, uid=caller.uid):
                try:
                    result = await fn(request, caller, act)
                except web.HTTPException as exc:  # the body was too large, for one
                    _refused(act.action, _from_http(exc, request))
                    raise
                except CordonError as err:
                    if _is_refusal(err):
                        _refused(act.action, err)
                    raise
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
                    _refused(action, err)
                raise
        uid = _peer_uid(request)
        try:
            return self.policy.identify(uid, _bearer(request))
        except AccessRefused as err:
            with audit.bind(actor=user_name(uid), role=None, via="token", uid=uid):
                _refused(action, err)
            raise

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
        except sqlite3.Error as exc:  # the journal: read-only, locked, disk full
            return _error_response(
                DaemonError(
                    f"the daemon's journal cannot be used: {exc}",
                    hint="see the daemon's state directory: permissions, free space, locks",
                ),
                503,
            )
        except Exception:
            _log.error(
                "internal error on %s %s:\n%s",
                request.method,
                request.path[:200],
                scrub(traceback.format_exc()),
            )
            return _error_response(
                DaemonError(
                    "internal error in the daemon; nothing more is said here",
                    hint="the daemon's log has the details",
                ),
                500,
            )

    def _refused_unrouted(self, request: web.Request, err: CordonError) -> None:
        action = f"{request.method} {request.path}"[:200]
        who: dict[str, Any] = {"actor": None, "role": None, "via": None, "uid": None}
        tls, pin = _tls_peer(request)
        if tls:
            user = self.policy.certificates.get(pin) if pin else None
            who.update(actor=user, via="certificate", pin=pin)
            with audit.bind(**who):
                _refused(action, err)
            return
        try:
            who["uid"] = uid = _peer_uid(request)
            who["actor"] = user_name(uid)
            caller = self.policy.identify(uid, _bearer(request))
            who.update(actor=caller.user, role=caller.role, via=caller.via)
        except AccessRefused:
            pass  # audited as whoever the socket says, or nobody known
        with audit.bind(**who):
            _refused(action, err)

    def require(self, decision: Decision, caller: Caller, action: Action) -> Decision:
        if decision.allowed:
            return decision
        roles = " or ".join(r.value for r in GRANTS if action in GRANTS[r])
        hint = decision.hint or f"{action} needs the role {roles} (see {self.policy.source})"
        raise AccessRefused(f"refused: {decision.why}", hint=hint)

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

    async def status(self, _request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.STATUS), caller, Action.STATUS)
        return await self.call(self.backend.status, caller)

    async def plan(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.PLAN), caller, Action.PLAN)
        body = parse_body(PlanRequest, await request.read(), what="POST /v1/plan")
        sites = list(body.sites) if body.sites else None
        return await self.call(
            self.backend.plan,
            caller,
            playbook=body.playbook,
            sites=sites,
            params=dict(body.params) if body.params else None,
        )

    async def run(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.RUN), caller, Action.RUN)
        body = parse_body(RunRequest, await request.read(), what="POST /v1/runs")
        params = dict(body.params) if body.params else None
        meta = await self.call(self.backend.playbook_meta, body.playbook, params)
        decision = authorize(
            caller,
            Action.RUN,
            playbook_emergency=meta.emergency,
            playbook_approval=meta.approval,
            reason=body.reason,
        )
        self.require(decision, caller, Action.RUN)
        return await self.call(
            self.backend.start_run,
            caller,
            playbook=body.playbook,
            sites=list(body.sites) if body.sites else None,
            digest=body.digest,
            reason=body.reason,
            attest=dict(body.attest) if body.attest else None,
            soak_seconds=body.soak_seconds,
            decision=decision,
            params=params,
        )

    async def runs(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.RUNS), caller, Action.RUNS)
        query = parse_query(RunsQuery, request.query, what="GET /v1/runs")
        return await self.call(self.backend.list_runs, caller, limit=query.limit)

    async def show(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.SHOW), caller, Action.SHOW)
        rid = run_id(request.match_info["run_id"], what="GET /v1/runs/{run_id}")
        wait, since = wait_query(request.query, what="GET /v1/runs/{run_id}")
        if wait > 0:  # a long-poll: answer once the run differs from `since` (#18)
            return await self.call_waiting(
                self.backend.wait_run, caller, run_id=rid, since=since, wait=wait
            )
        return await self.call(self.backend.show_run, caller, run_id=rid)

    async def approve(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.APPROVE), caller, Action.APPROVE)
        what = "POST /v1/runs/{run_id}/approve"
        rid = run_id(request.match_info["run_id"], what=what)
        body = parse_body(ApproveRequest, await request.read(), what=what)
        return await self.call(self.backend.approve, caller, run_id=rid, reason=body.reason)

    async def rollback(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.ROLLBACK), caller, Action.ROLLBACK)
        what = "POST /v1/runs/{run_id}/rollback"
        rid = run_id(request.match_info["run_id"], what=what)
        body = parse_body(RollbackRequest, await request.read(), what=what)
        return await self.call(self.backend.rollback, caller, run_id=rid, reason=body.reason)

    async def attest(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.ATTEST), caller, Action.ATTEST)
        what = "POST /v1/runs/{run_id}/attest"
        rid = run_id(request.match_info["run_id"], what=what)
        body = parse_body(AttestRequest, await request.read(), what=what)
        return await self.call(
            self.backend.attest,
            caller,
            run_id=rid,
            site=body.site,
            zone=body.zone,
            reason=body.reason,
        )

    async def incident(self, request: web.Request, caller: Caller, act: _Act) -> JSON:
        # The body says which action this is (audited as incident.open / incident.close).
        body = parse_body(IncidentRequest, await request.read(), what="POST /v1/incidents")
        action = Action.INCIDENT_OPEN if body.action == "open" else Action.INCIDENT_CLOSE
        act.action = action.value
        self.require(may(caller, action), caller, action)
        return await self.call(
            self.backend.incident,
            caller,
            action=body.action,
            name=body.name,
            site=body.site,
            reason=body.reason,
        )

    async def notify(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.INCIDENT_NOTIFY), caller, Action.INCIDENT_NOTIFY)
        what = "POST /v1/incidents/notify"
        body = parse_body(NotifyRequest, await request.read(), what=what)
        return await self.call(
            self.backend.notify,
            caller,
            incident=body.incident,
            kind=body.kind,
            to=body.to,
            ref=body.ref,
            at=body.at,
            by=body.by,
        )

    async def audit_report(self, request: web.Request, caller: Caller, _act: _Act) -> JSON:
        self.require(may(caller, Action.AUDIT_REPORT), caller, Action.AUDIT_REPORT)
        what = "GET /v1/audit/report"
        query = parse_query(AuditReportQuery, request.query, what=what)
        if query.run is None and query.incident is None:
            raise ConfigError(
                f"invalid request to {what}: name a run or an incident",
                hint="cordon audit report --run RUN_ID, or --incident INCIDENT_ID",
            )
        return await self.call(
            self.backend.audit_report, caller, run=query.run, incident=query.incident
        )


MAX_WAIT_S = 30.0  # the longest long-poll of GET /v1/runs/{run_id}?wait=
MAX_LONG_POLLS = 64  # long-polls waiting at once; more queue behind them (other requests do not)


def wait_query(query: Any, *, what: str) -> tuple[float, str | None]:
    """`?wait=SECONDS&since=VERSION` of a run's long-poll (both optional; other parameters are
    ignored, as before the long-poll): `ConfigError` for a bad value, nothing changed."""
    raw_wait, since = query.get("wait"), query.get("since")
    try:
        wait = float(raw_wait) if raw_wait is not None else 0.0
    except ValueError:
        wait = -1.0
    if not 0.0 <= wait <= MAX_WAIT_S:
        raise ConfigError(
            f"invalid request to {what}: wait={str(raw_wait)[:40]!r}: expected seconds from 0 "
            f"to {MAX_WAIT_S:g}",
            hint="nothing was changed",
        )
    if since is not None and not re.fullmatch(r"[0-9a-f]{16}", since):
        raise ConfigError(
            f"invalid request to {what}: since={since[:40]!r}: expected the 16 hex digits of "
            "a version this route answered",
            hint="nothing was changed",
        )
    return wait, since


def make_app(
    backend: Backend, policy: Policy, *, directory: Directory | None = None
) -> web.Application:
    """The API as an aiohttp application; serve it with `serve` (or `start`), and over TCP
    with `agent.api.tcp.start_tcp`. `directory`: several daemons share the state (standby
    redirects, the role headers)."""
    api = _Api(backend, policy, directory)
    app = web.Application(client_max_size=MAX_BODY, middlewares=[api.errors])
    app.on_response_prepare.append(api.who_answers)
    ep = api.endpoint
    app.router.add_get("/v1/health", api.health)
    app.router.add_get("/v1/status", ep(Action.STATUS, api.status))
    app.router.add_post("/v1/plan", ep(Action.PLAN, api.plan))
    app.router.add_post("/v1/runs", ep(Action.RUN, api.run))
    app.router.add_get("/v1/runs", ep(Action.RUNS, api.runs))
    app.router.add_get("/v1/runs/{run_id}", ep(Action.SHOW, api.show))
    app.router.add_post("/v1/runs/{run_id}/approve", ep(Action.APPROVE, api.approve))
    app.router.add_post("/v1/runs/{run_id}/rollback", ep(Action.ROLLBACK, api.rollback))
    app.router.add_post("/v1/runs/{run_id}/attest", ep(Action.ATTEST, api.attest))
    app.router.add_post("/v1/incidents", ep("incident", api.incident))
    app.router.add_post("/v1/incidents/notify", ep(Action.INCIDENT_NOTIFY, api.notify))
    app.router.add_get("/v1/audit/report", ep(Action.AUDIT_REPORT, api.audit_report))

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
