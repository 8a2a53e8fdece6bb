"""Test doubles for the daemon API: a recorder that stands between the API and a backend (the
fake below or the real `agent.service.service.Service`), a fake backend, a real aiohttp server on a
Unix socket in a background thread, and audit log readers.

The fake decides nothing the engine decides (no two-person rule, no plan, no lock): it keeps the
runs it was asked to start and answers in the real service's shape, which
tests/daemon/test_api_real.py compares with the real service's answers. tests/daemon/test_api.py
runs every test against both; rules are the real service's."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from agent import audit
from agent.api.auth import Caller, Decision
from agent.api.backend import Backend
from agent.api.http import start
from agent.errors import Issue, NotFound, PlaybookError
from agent.service.changes import version
from agent.service.playbooks import PlaybookMeta
from agent.wire import JSON
from tests.conftest import EXAMPLE

# The playbooks the API tests use, with the flags authorization reads. The real service reads the
# same names from the working directory tests/daemon/conftest.py `workdir` makes (the shipped
# preventive-degraded, and three made from it with these flags).
PLAYBOOKS = {
    "preventive-degraded": PlaybookMeta(emergency=True, approval="none"),
    "routine": PlaybookMeta(emergency=False, approval="none"),
    "hold": PlaybookMeta(emergency=False, approval="two_person"),
    "hold-emergency": PlaybookMeta(emergency=True, approval="two_person"),
}
# establishments of the example inventory (tests.conftest.EXAMPLE), each with an `icu` zone
SITES = ("rennes-la-sagesse", "saint-nazaire-estuaire", "nantes-jules-verne", "fontenay-sud-vendee")
LEVELS = {"preventive-degraded": "L2", "routine": "L2", "hold": "L2", "hold-emergency": "L2"}


def digest_of(playbook: str) -> str:
    return f"sha256-{playbook}"


@dataclass
class Call:
    name: str
    user: str
    via: str
    args: dict[str, Any]


class Recorder:
    """The backend the API is given in tests: records every call that could act or read (not
    `playbook_meta`) with the caller's identity and arguments, then passes it on to `inner` (the
    fake or the real service) unchanged. `fail_with`: raised by `status` instead of passing it on,
    to test how the API translates an error the backend raises."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[Call] = []
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()

    def _record(self, method: str, caller: Caller, /, **args: Any) -> None:
        with self._lock:
            self.calls.append(Call(method, caller.user, caller.via, args))

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def playbook_meta(self, name: str, params: dict[str, str] | None = None) -> PlaybookMeta:
        return self.inner.playbook_meta(name, params)

    def status(self, caller: Caller) -> JSON:
        self._record("status", caller)
        if self.fail_with is not None:
            raise self.fail_with
        return self.inner.status(caller)

    def plan(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        self._record("plan", caller, playbook=playbook, sites=sites)
        return self.inner.plan(caller, playbook=playbook, sites=sites, params=params)

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
        return self.inner.start_run(
            caller,
            playbook=playbook,
            sites=sites,
            digest=digest,
            reason=reason,
            attest=attest,
            soak_seconds=soak_seconds,
            decision=decision,
            params=params,
        )

    def list_runs(self, caller: Caller, *, limit: int) -> JSON:
        self._record("list_runs", caller, limit=limit)
        return self.inner.list_runs(caller, limit=limit)

    def show_run(self, caller: Caller, *, run_id: str) -> JSON:
        self._record("show_run", caller, run_id=run_id)
        return self.inner.show_run(caller, run_id=run_id)

    def wait_run(self, caller: Caller, *, run_id: str, since: str | None, wait: float) -> JSON:
        self._record("wait_run", caller, run_id=run_id, since=since, wait=wait)
        return self.inner.wait_run(caller, run_id=run_id, since=since, wait=wait)

    def approve(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        self._record("approve", caller, run_id=run_id, reason=reason)
        return self.inner.approve(caller, run_id=run_id, reason=reason)

    def rollback(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        self._record("rollback", caller, run_id=run_id, reason=reason)
        return self.inner.rollback(caller, run_id=run_id, reason=reason)

    def attest(self, caller: Caller, *, run_id: str, site: str, zone: str, reason: str) -> JSON:
        self._record("attest", caller, run_id=run_id, site=site, zone=zone, reason=reason)
        return self.inner.attest(caller, run_id=run_id, site=site, zone=zone, reason=reason)

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
        return self.inner.incident(caller, action=action, name=name, site=site, reason=reason)

    def notify(
        self,
        caller: Caller,
        *,
        incident: str | None,
        kind: str,
        to: str,
        ref: str,
        at: str | None = None,
        by: str | None = None,
    ) -> JSON:
        self._record("notify", caller, incident=incident, kind=kind, to=to, ref=ref, at=at, by=by)
        return self.inner.notify(caller, incident=incident, kind=kind, to=to, ref=ref, at=at, by=by)

    def audit_report(
        self, caller: Caller, *, run: str | None, incident: str | None, verify: bool = True
    ) -> JSON:
        self._record("audit_report", caller, run=run, incident=incident)
        return self.inner.audit_report(caller, run=run, incident=incident, verify=verify)


@dataclass
class FakeService:
    """Stands in for the engine: keeps the runs it started in a dict and answers in the real
    service's shapes. It checks only that the names it is given exist (as the real one does
    before anything else), with the real one's NotFound message; it checks no digest, takes no
    lock, and approves, cancels and attests whatever it is asked to."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _sites(self, sites: list[str] | None) -> list[str]:
        for site in sites or []:
            if site not in SITES:
                raise NotFound(f"no site {site} in the inventory {EXAMPLE}")
        return list(sites or SITES)

    def _run(self, run_id: str, *, what: str = "") -> dict[str, Any]:
        if run_id not in self.runs:
            raise NotFound(f"no run {run_id}{what}")
        return self.runs[run_id]

    def playbook_meta(self, name: str, params: dict[str, str] | None = None) -> PlaybookMeta:
        if name not in PLAYBOOKS:
            raise PlaybookError([Issue(f"playbooks/{name}.yaml", "", "no such playbook file")])
        return PLAYBOOKS[name]

    def status(self, caller: Caller) -> JSON:
        open_runs = [
            r for r in self.runs.values() if r["status"] in ("running", "awaiting_approval")
        ]
        held = {s: r["run_id"] for r in open_runs for s in r["sites"]}
        sites: list[JSON] = [
            {
                "site": s,
                "mode": "normal",
                "level": None,
                "since": None,
                "by": None,
                "run_id": None,
                "locked_by": held.get(s),
                "drift": [],
            }
            for s in SITES
        ]
        return {
            "sites": sites,
            "open_runs": [dict(r) for r in open_runs],
            "drift_alarms": [],
            "last_poll": None,
            "incidents": [],
            # a must-survive flow never checked yet (the real service lists every one)
            "flows": [{"flow": "icu-monitoring", "source": "a/icu/monitor -> a/icu/station:hl7"}],
        }

    def plan(
        self,
        caller: Caller,
        *,
        playbook: str,
        sites: list[str] | None,
        params: dict[str, str] | None = None,
    ) -> JSON:
        targets = self._sites(sites)
        meta = self.playbook_meta(playbook)
        return {
            "playbook": playbook,
            "sites": targets,
            "digest": digest_of(playbook),
            "emergency": meta.emergency,
            "approval": meta.approval,
            "changes": len(targets),
        }

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
        targets = self._sites(sites)
        self.playbook_meta(playbook)
        # the API's decision, echoed: whether the plan still holds (the digest) is not checked
        needs = decision.needs_approval
        status = "awaiting_approval" if needs else "running"
        with self._lock:
            run_id = f"R{len(self.runs) + 1}"
            self.runs[run_id] = {
                "run_id": run_id,
                "playbook": playbook,
                "level": LEVELS[playbook],
                "sites": targets,
                "actor": caller.user,
                "status": status,
                "waiting": None,
                "created_at": time.time(),
                "finished_at": None,
                "detail": None,
                "steps_total": len(targets),
                "steps_done": 0,
                "break_glass": decision.break_glass,
                "reason": reason,
                "driver_pid": None,
                "interrupted": True,
                "stop_requested": None,
            }
        log = audit.get_logger(run_id=run_id)
        log.info("run.started", sites=targets)
        if decision.break_glass:
            log.warning("run.break_glass", reason=reason)
        return {
            "run_id": run_id,
            "status": status,
            "playbook": playbook,
            "sites": targets,
            "changes": len(targets),
            "break_glass": decision.break_glass,
            "needs_approval": needs,
        }

    def list_runs(self, caller: Caller, *, limit: int) -> JSON:
        return {"runs": [dict(r) for r in reversed(self.runs.values())][:limit]}

    def show_run(self, caller: Caller, *, run_id: str) -> JSON:
        run = self._run(run_id)
        steps = [
            {
                "seq": seq,
                "site": site,
                "step": "cut",
                "device": f"fw-{site}",
                "method": "nft",
                "status": "pending",
                "error": None,
            }
            for seq, site in enumerate(run["sites"], start=1)
        ]
        return {**run, "steps": steps, "gates": [], "attestations": [], "approval": None}

    def wait_run(self, caller: Caller, *, run_id: str, since: str | None, wait: float) -> JSON:
        """The fake's runs change only by its own calls: it looks again every 20 ms."""
        deadline = time.monotonic() + wait
        while True:
            out = self.show_run(caller, run_id=run_id)
            if since is None or version(out) != since or time.monotonic() >= deadline:
                return out
            time.sleep(0.02)

    def approve(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        self._run(run_id, what=" in the journal")
        audit.get_logger(run_id=run_id).info("run.approved", reason=reason)
        return {"run_id": run_id, "approved": "run", "by": caller.user}

    def rollback(self, caller: Caller, *, run_id: str, reason: str | None) -> JSON:
        run = self._run(run_id, what=" in the journal")
        run.update(
            status="cancelled", finished_at=time.time(), detail=f"cancelled by {caller.user}"
        )
        return {"run_id": run_id, "status": "cancelled", "steps": []}

    def attest(self, caller: Caller, *, run_id: str, site: str, zone: str, reason: str) -> JSON:
        self._run(run_id, what=" in the journal")
        return {"run_id": run_id, "site": site, "zone": zone, "by": caller.user}

    def incident(
        self,
        caller: Caller,
        *,
        action: Literal["open", "close"],
        name: str | None,
        site: str | None,
        reason: str,
    ) -> JSON:
        if site is not None:
            self._sites([site])
        if action == "open":
            return {
                "incident_id": "INC1",
                "name": name or "incident",
                "site": site,
                "status": "open",
            }
        return {"incident_id": "INC1", "status": "closed"}

    def notify(
        self,
        caller: Caller,
        *,
        incident: str | None,
        kind: str,
        to: str,
        ref: str,
        at: str | None = None,
        by: str | None = None,
    ) -> JSON:
        return {
            "incident_id": incident or "INC1",
            "kind": kind,
            "to": to,
            "ref": ref,
            "by": by or caller.user,
            "at": at,
        }

    def audit_report(
        self, caller: Caller, *, run: str | None, incident: str | None, verify: bool = True
    ) -> JSON:
        selection = f"run {run}" if run else f"incident {incident}"
        return {
            "selection": selection,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "log_dir": "",
            "integrity": {"ok": False, "summary": "not verified"},
            "chain": {"verdict": "not verified", "ok": False, "summary": "not verified"},
            "summary": {"records": 0, "runs": [], "sites": [], "still_degraded": []},
            "incidents": [],
            "configs": [],
            "cited": [],
            "timeline": [],
        }


class FakeBackend(Recorder):
    """The fake service behind a recorder: `calls` what the API asked, `runs` what it started."""

    def __init__(self) -> None:
        self.fake = FakeService()
        super().__init__(self.fake)
        self.runs = self.fake.runs


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
