"""Test doubles for the daemon API: a fake engine backend that records what it was asked to do,
a real aiohttp server on a Unix socket in a background thread, and audit log readers.

The fake decides nothing the engine decides (no two-person rule, no plan): it records the call
and answers in the real service's shape, which tests/daemon/test_api_real.py compares with the
real service's answers. Rules are tested against the real service there."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from agent import audit
from agent.daemon.api import start
from agent.daemon.auth import Caller, Decision
from agent.daemon.backend import JSON, NotFound, PlaybookMeta
from agent.errors import Issue, PlanError, PlaybookError

PLAYBOOKS = {
    "isolate-site": PlaybookMeta(emergency=True, approval="two_person"),
    "preventive-degraded": PlaybookMeta(emergency=True, approval="none"),
    "reconnect": PlaybookMeta(emergency=False, approval="two_person"),
    "segment": PlaybookMeta(emergency=False, approval="none"),
}
SITES = ("la-sagesse", "st-malo", "vitre")


def digest_of(playbook: str) -> str:
    return f"sha256-{playbook}"


@dataclass
class Call:
    name: str
    user: str
    via: str
    args: dict[str, Any]


@dataclass
class FakeBackend:
    """Records every call that could act or read (not `playbook_meta`); runs live in a dict."""

    calls: list[Call] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_with: BaseException | None = None  # raised by `status`, to test error translation
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, method: str, caller: Caller, /, **args: Any) -> None:
        with self._lock:
            self.calls.append(Call(method, caller.user, caller.via, args))

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def _sites(self, sites: list[str] | None) -> list[str]:
        for site in sites or []:
            if site not in SITES:
                raise NotFound(f"site {site!r} is not in the inventory")
        return list(sites or SITES)

    def _run(self, run_id: str) -> dict[str, Any]:
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id}")
        return self.runs[run_id]

    def playbook_meta(self, name: str, params: dict[str, str] | None = None) -> PlaybookMeta:
        if name not in PLAYBOOKS:
            raise PlaybookError([Issue(f"playbooks/{name}.yaml", "", "no such playbook file")])
        return PLAYBOOKS[name]

    def status(self, caller: Caller) -> JSON:
        self._record("status", caller)
        if self.fail_with is not None:
            raise self.fail_with
        return {"sites": [{"site": s, "mode": "normal"} for s in SITES]}

    def plan(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        self._record("plan", caller, playbook=playbook, sites=sites)
        self.playbook_meta(playbook)
        return {"playbook": playbook, "sites": self._sites(sites), "digest": digest_of(playbook)}

    def start_run(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        digest: str,
        reason: str | None,
        attest: dict[str, str] | None,
        soak_seconds: int | None,
        decision: Decision,
        params: dict[str, str] | None = None,
    ) -> JSON:
        self._record(
            "start_run",
            caller,
            playbook=playbook,
            sites=sites,
            digest=digest,
            reason=reason,
            attest=attest,
            soak_seconds=soak_seconds,
            break_glass=decision.break_glass,
            needs_approval=decision.needs_approval,
        )
        targets = self._sites(sites)
        if digest != digest_of(playbook):
            raise PlanError("the plan changed since it was shown", hint="plan again")
        with self._lock:
            run_id = f"R{len(self.runs) + 1}"
            status = "awaiting_approval" if decision.needs_approval else "running"
            self.runs[run_id] = {"run_id": run_id, "by": caller.user, "status": status}
        log = audit.get_logger(run_id=run_id)
        if decision.break_glass:
            log.warning("run.break_glass", reason=reason)
        log.info("run.started", sites=targets)
        # the real service's answer (agent.daemon.service.Service.start_run)
        return {
            "run_id": run_id,
            "status": status,
            "playbook": playbook,
            "sites": targets,
            "changes": 1,
            "break_glass": decision.break_glass,
            "needs_approval": decision.needs_approval,
        }

    def list_runs(self, caller: Caller, *, limit: int) -> JSON:
        self._record("list_runs", caller, limit=limit)
        return {"runs": list(self.runs.values())[:limit]}

    def show_run(self, caller: Caller, *, run_id: str) -> JSON:
        self._record("show_run", caller, run_id=run_id)
        return dict(self._run(run_id))

    def approve(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        """Records and approves: the two-person rule is the engine's, tested on the real one."""
        self._record("approve", caller, run_id=run_id, reason=reason)
        run = self._run(run_id)
        run["status"] = "running"
        audit.get_logger(run_id=run_id).info("run.approved", reason=reason)
        return {"run_id": run_id, "approved": "run", "by": caller.user}

    def rollback(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        self._record("rollback", caller, run_id=run_id, reason=reason)
        self._run(run_id)["status"] = "rolled_back"
        return dict(self.runs[run_id])

    def attest(self, caller: Caller, *, run_id: str, site: str, zone: str, reason: str) -> JSON:
        self._record("attest", caller, run_id=run_id, site=site, zone=zone, reason=reason)
        self._run(run_id)
        return {"run_id": run_id, "site": site, "zone": zone}

    def incident(
        self,
        caller: Caller,
        *,
        action: Literal["open", "close"],
        name: str | None,
        site: str | None,
        reason: str,
    ) -> JSON:
        self._record("incident", caller, action=action, name=name, site=site, reason=reason)
        if action == "open":
            return {
                "incident_id": name or "INC1",
                "name": name or "incident",
                "site": site,
                "status": "open",
            }
        return {"incident_id": name or "INC1", "status": "closed"}

    def notify(self, caller: Caller, *, incident: str | None, kind: str, to: str, ref: str) -> JSON:
        self._record("notify", caller, incident=incident, kind=kind, to=to, ref=ref)
        return {
            "incident_id": incident or "INC1",
            "kind": kind,
            "to": to,
            "ref": ref,
            "by": caller.user,
        }

    def audit_report(self, caller: Caller, *, run: str | None, incident: str | None) -> JSON:
        self._record("audit_report", caller, run=run, incident=incident)
        return {"run": run, "incident": incident, "rows": []}


class Server:
    """A real `start()`ed aiohttp server on a Unix socket, its loop in a background thread."""

    def __init__(self, app: web.Application, path: Path, *, group: str | None = None) -> None:
        self.app = app
        self.path = path
        self.group = group
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await start(self.app, self.path, group=self.group)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> Server:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the test server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def records(log_dir: Path, event: str | None = None) -> list[dict[str, Any]]:
    """Every audit record written under `log_dir` (optionally only `event`), in order."""
    out = []
    for path in sorted(log_dir.glob("audit-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if event is None or record["event"] == event:
                out.append(record)
    return out
