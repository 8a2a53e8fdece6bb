"""The CLI's client for `cordon daemon`: HTTP over the daemon's Unix socket, or over TCP with TLS
to a daemon whose certificate is pinned, presenting a client certificate (httpx; `agent.mtls`),
one method per route, and the daemon's JSON errors raised again as the same `agent.errors` types.

Several daemons on one PostgreSQL state: a standby refuses an order naming the active node and
its address (HTTP 421, `error.active`); the client sends the same request there once, over TLS
with its client certificate and the active node's pin as recorded in the shared state (which it
read through the standby it trusts): never twice, never in a loop. What happened is said in
`notes` (the CLI prints them on stderr), as is an answer that came from a standby.
`Client` answers the JSON objects as sent; `TypedClient` parses them into the wire models of
`agent.wire` (what the CLI renders).

Imports pydantic, `agent.errors`, `agent.wire`, `agent.api` (the default socket path) and
`agent.service.changes` (a run's version, for the long-poll); httpx when a `Client` is made
(`Routes` and `TypedClient` serve `agent.api.local` without it); `agent.mtls` and `agent.secrets`
only for TLS; never aiohttp, the service itself, the engine or a driver. The token
is sent as a header to the daemon the user named, never shown, and never along a redirect: the
address and pin of a redirect come from the shared state (whoever can write `cordon_nodes`
names them), and over TCP the client certificate says who the caller is, not a token.
"""

from __future__ import annotations

import errno
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from agent.api import default_socket_path
from agent.errors import (
    AccessRefused,
    ConfigError,
    CordonError,
    DaemonDown,
    DaemonError,
    DeviceError,
    InventoryError,
    Issue,
    PlaybookError,
    StandbyError,
)
from agent.service.changes import version
from agent.wire import JSON, ErrorInfo, PlanOut, RunStarted, RunView

if TYPE_CHECKING:  # imported on use: `cordon ... --local` never loads them (#18)
    import ssl

    import httpx

    # nor `cordon run`, the models of the other answers (agent/wire/__init__.py)
    from agent.wire.reports import Health, RunsOut, StatusOut
    from agent.wire.steering import Approved, Attested, IncidentOut, Notified, RollbackOut

__all__ = ["Client", "Routes", "TypedClient"]

_M = TypeVar("_M", bound=BaseModel)

DOWN_HINT = (
    "start it with `cordon daemon`, or add --local to run the engine directly "
    "(audited the same way)"
)
_DOWN_ERRNOS = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


class Routes:
    """One method per route of the API, each answering its JSON object; how a request travels
    is `_send`'s (`Client`: HTTP; `agent.api.local.LocalClient`: in this process)."""

    where: str  # the daemon (or the process) answering, as the messages name it
    notes: list[str]  # what the transport noted (a redirect followed...), said on stderr

    # -- one method per route

    def health(self) -> JSON:
        """`{"ok": true, "version": ...}` when the daemon is there (no role needed)."""
        return self._send("GET", "/health")

    def status(self) -> JSON:
        return self._send("GET", "/status")

    def plan(
        self,
        playbook: str,
        *,
        sites: list[str] | None = None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        return self._send(
            "POST", "/plan", body={"playbook": playbook, "sites": sites, "params": params}
        )

    def run(
        self,
        playbook: str,
        *,
        digest: str,
        sites: list[str] | None = None,
        reason: str | None = None,
        attest: dict[str, str] | None = None,
        soak_seconds: int | None = None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        """Start a run of the plan whose `digest` the caller saw (from `plan`)."""
        body = {
            "playbook": playbook,
            "sites": sites,
            "digest": digest,
            "reason": reason,
            "attest": attest,
            "soak_seconds": soak_seconds,
            "params": params,
        }
        return self._send("POST", "/runs", body=body)

    def runs(self, *, limit: int | None = None) -> JSON:
        return self._send("GET", "/runs", params={"limit": limit})

    def show(self, run_id: str, *, wait: float | None = None, since: str | None = None) -> JSON:
        """The run; with `wait`, a long-poll: answered once the run's version differs from
        `since` (`agent.service.changes.version` of an earlier answer), or after `wait` s."""
        return self._send("GET", f"/runs/{_seg(run_id)}", params={"wait": wait, "since": since})

    def approve(self, run_id: str, *, reason: str | None = None) -> JSON:
        return self._send("POST", f"/runs/{_seg(run_id)}/approve", body={"reason": reason})

    def rollback(self, run_id: str, *, reason: str | None = None) -> JSON:
        return self._send("POST", f"/runs/{_seg(run_id)}/rollback", body={"reason": reason})

    def attest(self, run_id: str, *, site: str, zone: str, reason: str) -> JSON:
        body = {"site": site, "zone": zone, "reason": reason}
        return self._send("POST", f"/runs/{_seg(run_id)}/attest", body=body)

    def incident(
        self,
        action: Literal["open", "close"],
        *,
        reason: str,
        name: str | None = None,
        site: str | None = None,
    ) -> JSON:
        body = {"action": action, "name": name, "site": site, "reason": reason}
        return self._send("POST", "/incidents", body=body)

    def notify(
        self,
        *,
        kind: str,
        to: str,
        ref: str,
        incident: str | None = None,
        at: str | None = None,
        by: str | None = None,
    ) -> JSON:
        body = {"incident": incident, "kind": kind, "to": to, "ref": ref, "at": at, "by": by}
        return self._send("POST", "/incidents/notify", body=body)

    def audit_report(self, *, run: str | None = None, incident: str | None = None) -> JSON:
        return self._send("GET", "/audit/report", params={"run": run, "incident": incident})

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> JSON:
        raise NotImplementedError


class Client(Routes):
    """`Client(path, token=None)`: talk to the daemon listening on the Unix socket `path`;
    `Client(url="https://HOST:PORT", pin="sha256:...", cert=CERT, key=KEY)`: to the daemon
    serving its API over TLS there, whose certificate has `pin`, as the user of `cert`.
    `cert`/`key` with a socket: used only to follow a standby's redirect.

    Each method returns the daemon's JSON answer, or raises what the daemon raised (the same
    `CordonError` subclass, message, hint and exit code). `DaemonDown` if nothing listens.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        url: str | None = None,
        pin: str | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
        follow: bool = True,
    ) -> None:
        import httpx  # noqa: PLC0415 - not for --local (#18)

        self.path = Path(path) if path is not None else default_socket_path()
        self.url = url.rstrip("/") if url is not None else None
        self.where = self.url or str(self.path)
        self.timeout = timeout
        self.follow = follow
        self.notes: list[str] = []  # a redirect followed, an answer from a standby
        self._tls = (cert, key)
        headers = {"Authorization": f"Bearer {_check_token(token)}"} if token is not None else {}
        if transport is None and self.url is not None:
            transport = httpx.HTTPTransport(verify=_pinned(self.url, pin, cert, key))
        self._http = httpx.Client(
            # plain HTTP on a Unix socket: no certificate store to load (#18)
            transport=transport or httpx.HTTPTransport(uds=str(self.path), verify=False),
            base_url=f"{self.url}/v1" if self.url is not None else "http://cordon/v1",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def __repr__(self) -> str:
        return f"Client({self.where!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> JSON:
        import httpx  # noqa: PLC0415 - loaded by __init__

        try:
            response = self._http.request(
                method,
                url,
                json=None if body is None else {k: v for k, v in body.items() if v is not None},
                params=None
                if params is None
                else {k: v for k, v in params.items() if v is not None},
            )
        except httpx.TimeoutException as exc:
            raise DaemonError(
                f"the daemon at {self.where} did not answer within {self.timeout:g} s",
                hint="see the daemon's log; the request may still be in progress (`cordon runs`)",
            ) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        try:
            return self._decode(response)
        except StandbyError as err:
            active = response.json()["error"].get("active")
            return self._follow(err, active, method, url, body, params)

    def _follow(
        self,
        err: StandbyError,
        active: Any,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
    ) -> JSON:
        """A standby refused: send the same request once to the active node it named, as
        the user of the client certificate and without the bearer token (the target's
        address and pin are read from the shared state: a token sent there would be handed to
        whoever wrote them, and over TCP it identifies no one)."""
        if not self.follow:
            raise err
        if not isinstance(active, dict):
            raise StandbyError(
                err.message,
                hint="no daemon is active: a standby takes over within the failover bound "
                "(CORDON_FAILOVER_S); `cordon status` shows the nodes",
            )
        node = str(active.get("node"))
        target, pin = active.get("url"), active.get("pin")
        if not isinstance(target, str) or not isinstance(pin, str):
            raise StandbyError(
                err.message,
                hint=f"node {node} serves no API over TCP (its CORDON_API_LISTEN is unset): "
                "send the order on that node (its socket)",
            )
        cert, key = self._tls
        if cert is None or key is None:
            raise StandbyError(
                err.message,
                hint=f"to be sent there ({target}), set CORDON_API_CLIENT_CERT and "
                "CORDON_API_CLIENT_KEY to your client certificate listed in the roles file",
            )
        with Client(
            url=target,
            pin=pin,
            cert=cert,
            key=key,
            timeout=self.timeout,
            follow=False,
        ) as other:
            answer = other._send(method, url, body=body, params=params)
            self.notes.append(
                f"{self.where} is a standby: the order was sent to the active node {node} "
                f"at {target}"
            )
            self.notes += other.notes
            return answer

    def _unreachable(self, exc: httpx.TransportError) -> CordonError:
        import httpx  # noqa: PLC0415 - loaded by __init__

        code = _errno(exc)
        tls = _tls_error(exc)
        if tls is not None:
            return AccessRefused(
                f"no TLS session with the daemon at {self.where}: {tls}; nothing was sent",
                hint="check CORDON_API_PIN (the daemon's certificate) and that your client "
                "certificate (CORDON_API_CLIENT_CERT) is listed in the daemon's roles file",
            )
        if self.url is not None and isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            # TLS 1.3: a server that refuses the client certificate says so after the client's
            # side of the handshake ended, by closing: the request was never read
            return DaemonError(
                f"the daemon at {self.where} closed the TLS connection without answering: it "
                "does not accept this client certificate, or it stopped",
                hint="check that your certificate (CORDON_API_CLIENT_CERT) is listed under "
                "`certificates:` in the daemon's roles file; the daemon's log says if it stopped",
            )
        if code in _DENIED_ERRNOS:
            return AccessRefused(
                f"cannot connect to the daemon at {self.where}: permission denied",
                hint="the socket admits its owner and its group only: ask to be added to the group",
            )
        if code in _DOWN_ERRNOS or isinstance(exc, httpx.ConnectError):
            return DaemonDown(f"the daemon is not running at {self.where}", hint=DOWN_HINT)
        return DaemonError(
            f"lost the connection to the daemon at {self.where} ({type(exc).__name__})",
            hint="see the daemon's log; `cordon runs` shows what was done",
        )

    def _decode(self, response: httpx.Response) -> JSON:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success and isinstance(data, dict):
            if response.headers.get("Cordon-Role") == "standby":
                active = response.headers.get("Cordon-Active", "none")
                at = response.headers.get("Cordon-Active-Url")
                note = (
                    f"answered by node {response.headers.get('Cordon-Node')}, a standby, from "
                    f"the shared state; the active node is {active}" + (f" ({at})" if at else "")
                )
                if note not in self.notes:
                    self.notes.append(note)
            return data
        error = data.get("error") if isinstance(data, dict) else None
        try:
            info = ErrorInfo.model_validate(error)
        except ValidationError:
            raise DaemonError(
                f"the daemon at {self.where} answered HTTP {response.status_code} "
                "without a readable body",
                hint="is this a cordon daemon of the same version?",
            ) from None
        raise rebuild(info)


class TypedClient:
    """The same routes as `Client`, each answer parsed into its wire model. An answer this client
    cannot read (another version's daemon) is a `DaemonError` naming the field, never a
    traceback."""

    def __init__(self, client: Routes) -> None:
        self.raw = client

    def _parse(self, model: type[_M], data: JSON) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(x) for x in first["loc"]) or "the body"
            raise DaemonError(
                f"the daemon at {self.raw.where} answered a {model.__name__} this client cannot "
                f"read: {where}: {first['msg']}",
                hint="is this a cordon daemon of the same version?",
            ) from None

    def health(self) -> Health:
        from agent.wire.reports import Health  # noqa: PLC0415 - #18

        return self._parse(Health, self.raw.health())

    def status(self) -> StatusOut:
        from agent.wire.reports import StatusOut  # noqa: PLC0415 - #18

        return self._parse(StatusOut, self.raw.status())

    def plan(
        self, playbook: str, *, sites: list[str] | None = None, params: dict[str, str] | None = None
    ) -> PlanOut:
        return self._parse(PlanOut, self.raw.plan(playbook, sites=sites, params=params))

    def run(
        self,
        playbook: str,
        *,
        digest: str,
        sites: list[str] | None = None,
        reason: str | None = None,
        attest: dict[str, str] | None = None,
        soak_seconds: int | None = None,
        params: dict[str, str] | None = None,
    ) -> RunStarted:
        answer = self.raw.run(
            playbook,
            digest=digest,
            sites=sites,
            reason=reason,
            attest=attest,
            soak_seconds=soak_seconds,
            params=params,
        )
        return self._parse(RunStarted, answer)

    def runs(self, *, limit: int | None = None) -> RunsOut:
        from agent.wire.reports import RunsOut  # noqa: PLC0415 - #18

        return self._parse(RunsOut, self.raw.runs(limit=limit))

    def show(self, run_id: str) -> RunView:
        return self._parse(RunView, self.raw.show(run_id))

    def watch(self, run_id: str, *, since: str | None, wait: float) -> tuple[RunView, str]:
        """The run once it differs from the version `since` (at once when None), or after `wait`
        seconds; with its version, to pass as `since` next time."""
        raw = self.raw.show(run_id, wait=wait, since=since)
        return self._parse(RunView, raw), version(raw)

    def approve(self, run_id: str, *, reason: str | None = None) -> Approved:
        from agent.wire.steering import Approved  # noqa: PLC0415 - #18

        return self._parse(Approved, self.raw.approve(run_id, reason=reason))

    def rollback(self, run_id: str, *, reason: str | None = None) -> RollbackOut:
        from agent.wire.steering import RollbackOut  # noqa: PLC0415 - #18

        return self._parse(RollbackOut, self.raw.rollback(run_id, reason=reason))

    def attest(self, run_id: str, *, site: str, zone: str, reason: str) -> Attested:
        from agent.wire.steering import Attested  # noqa: PLC0415 - #18

        return self._parse(Attested, self.raw.attest(run_id, site=site, zone=zone, reason=reason))

    def incident(
        self,
        action: Literal["open", "close"],
        *,
        reason: str,
        name: str | None = None,
        site: str | None = None,
    ) -> IncidentOut:
        from agent.wire.steering import IncidentOut  # noqa: PLC0415 - #18

        answer = self.raw.incident(action, reason=reason, name=name, site=site)
        return self._parse(IncidentOut, answer)

    def notify(
        self,
        *,
        kind: str,
        to: str,
        ref: str,
        incident: str | None = None,
        at: str | None = None,
        by: str | None = None,
    ) -> Notified:
        from agent.wire.steering import Notified  # noqa: PLC0415 - #18

        answer = self.raw.notify(kind=kind, to=to, ref=ref, incident=incident, at=at, by=by)
        return self._parse(Notified, answer)


def _check_token(token: str) -> str:
    """A bearer token is printable ASCII without spaces (RFC 6750); anything else is refused
    here, before it is sent, with a message that never quotes it."""
    if not token or any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigError(
            "the bearer token (--token or $CORDON_TOKEN) is empty or contains a character that "
            "is not printable ASCII (a space, an accent, a control character): nothing was sent",
            hint="copy the token again; tokens are printable ASCII without spaces",
        )
    return token


def _pinned(url: str, pin: str | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """The TLS context for the daemon at `url`: its pin checked before a byte is sent, our
    client certificate presented. Missing pieces: `ConfigError`, nothing sent."""
    from agent import mtls  # noqa: PLC0415 - TCP only: the socket client stays light

    if not url.startswith("https://"):
        raise ConfigError(
            f"the daemon's URL {url[:200]!r} is not https://HOST:PORT: the API is never spoken "
            "over TCP without TLS",
            hint="set CORDON_API_URL=https://HOST:PORT and CORDON_API_PIN=sha256:...",
        )
    if pin is None:
        raise ConfigError(
            f"no pin for the daemon's certificate at {url}: it is never trusted unverified",
            hint="set CORDON_API_PIN to the sha256:... `cordon api keygen` printed for it",
        )
    if cert is None or key is None:
        raise ConfigError(
            f"no client certificate for the daemon at {url}: over TCP the certificate says "
            "who you are",
            hint="set CORDON_API_CLIENT_CERT and CORDON_API_CLIENT_KEY=file:PATH",
        )
    return mtls.pinned_client_context(
        cert, key, pin, error=ConfigError, what="CORDON_API_PIN / CORDON_API_CLIENT_CERT"
    )


def _tls_error(exc: BaseException) -> str | None:
    """The TLS failure behind a transport error (a pin mismatch, a refused certificate)."""
    import ssl  # noqa: PLC0415 - loaded by httpx already

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return (
                str(cur.args[0])
                if type(cur).__name__ == "PinMismatch"
                else (f"TLS failed ({cur.reason or cur})")
            )
        cur = cur.__cause__ or cur.__context__
    return None


def _seg(value: str) -> str:
    """A path segment, quoted so that a bad id reaches the daemon's validation intact."""
    return quote(value, safe="")


def _errno(exc: BaseException) -> int | None:
    """The errno of the OSError behind a transport error (httpx wraps httpcore wraps it)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur.errno
        cur = cur.__cause__ or cur.__context__
    return None


def _error_classes() -> dict[str, type[CordonError]]:
    found: dict[str, type[CordonError]] = {"CordonError": CordonError}
    todo: list[type[CordonError]] = [CordonError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__name__ not in found:
                found[sub.__name__] = sub
                todo.append(sub)
    return found


def rebuild(info: ErrorInfo) -> CordonError:
    """The `CordonError` a daemon error body describes (a `DaemonError` for an unknown type)."""
    cls = _error_classes().get(info.type)
    err: CordonError
    if cls is None:
        err = DaemonError(info.message, hint=info.hint)
    else:
        # Subclasses take other constructor arguments (issues, device...): set the fields.
        err = cls.__new__(cls)
        CordonError.__init__(err, info.message, hint=info.hint)
        if isinstance(err, InventoryError | PlaybookError):
            err.issues = [_issue(i) for i in info.issues or []]
        if isinstance(err, DeviceError):
            err.device = info.device or "?"
            err.operation = info.operation or "?"
    if err.exit_code != info.exit_code:
        err.exit_code = info.exit_code
    return err


def _issue(data: dict[str, Any]) -> Issue:
    line = data.get("line")
    return Issue(
        str(data.get("file", "")),
        str(data.get("path", "")),
        str(data.get("message", "")),
        line if isinstance(line, int) else None,
    )
