"""The daemon-first `cordon` commands: status, plan, run, approve, attest, rollback, runs, show,
incident, and `cordon daemon` itself.

Each command sends its order to the daemon over its Unix socket (`Client`). With `--local` it
serves the same API inside this process, over the same journal, on a private socket, and talks
to that: a local order is identified, authorized (roles file, OS user or --token) and audited
exactly as one sent to the daemon; `run --local` then drives the run in this process.

Imports the client, the daemon's lock helpers, click; the API, the service and the engine only
for --local and `cordon daemon` (a plain `cordon status` stays light). Rendering only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from agent.daemon import ENV_STATE_DIR, SOCKET_NAME
from agent.daemon.client import Client
from agent.errors import ConfigError, PlanError

if TYPE_CHECKING:
    from aiohttp import web

    from agent.daemon.service import Service

__all__ = ["COMMANDS", "RUN_EXIT"]

JSON = dict[str, Any]
OPEN = ("running", "awaiting_approval")

# The exit code of `cordon run` (and `show`) for a run's final status. Detached, or still
# open: 0. Also in the README and in `cordon --help`.
RUN_EXIT: Mapping[str, int] = {
    "done": 0,
    "failed": 4,  # a step failed and the failure policy kept what was done (`cordon show`)
    "rolled_back": 15,  # a step failed and the failure policy undid the whole run
    "partial": 16,  # some sites keep their changes, others were undone
    "reisolated": 17,  # a soak caught an anomaly: the zone was isolated again, the run stopped
    "expired": 18,  # no second operator approved in time: nothing was sent
    "rollback_failed": 19,  # an undo failed: devices in an unknown state, their sites stay held
}
INTERRUPTED = 130

_P = ParamSpec("_P")
_R = TypeVar("_R")


# -- options shared by every command -----------------------------------------------------------


@dataclass(frozen=True)
class Opts:
    json: bool
    local: bool
    socket: Path | None
    token: str | None
    state_dir: Path
    inventory: Path | None
    roles: Path | None

    @property
    def color(self) -> bool:
        """Colour only for a person: never with --json, never into a pipe or a file."""
        return not self.json and sys.stdout.isatty()

    def socket_path(self) -> Path:
        """--socket, else the one the state directory's daemon wrote, else <state>/cordon.sock."""
        if self.socket is not None:
            return self.socket
        from agent.daemon.main import read_state  # noqa: PLC0415 - light, but daemon-side

        up = read_state(self.state_dir)
        if up is not None and isinstance(up.get("socket"), str):
            return Path(up["socket"])
        return self.state_dir / SOCKET_NAME


_OPTIONS = (
    click.option("--json", "json_out", is_flag=True, help="Machine output: JSON only on stdout."),
    click.option(
        "--local",
        is_flag=True,
        help="No daemon: run the engine in this process (authorized and audited the same way).",
    ),
    click.option(
        "--socket",
        type=click.Path(path_type=Path),
        envvar="CORDON_SOCKET",
        default=None,
        help="The daemon's socket (default: the state directory's).",
    ),
    click.option(
        "--token",
        envvar="CORDON_TOKEN",
        default=None,
        help="Your bearer token (default: $CORDON_TOKEN; without one, your OS user).",
    ),
    click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        envvar=ENV_STATE_DIR,
        default=".state",
        show_default=True,
        help="Journal and daemon state (default: $CORDON_STATE_DIR).",
    ),
    click.option(
        "--inventory",
        "-i",
        "inventory_path",
        type=click.Path(path_type=Path),
        default=None,
        help="With --local: the inventory (default: $CORDON_INVENTORY or the example).",
    ),
    click.option(
        "--roles",
        type=click.Path(path_type=Path),
        default=None,
        help="With --local: the roles file (default: $CORDON_ROLES or inventory/roles.yaml).",
    ),
)


def common(fn: Callable[Concatenate[Opts, _P], _R]) -> Callable[_P, _R]:
    """Add the shared options; the command receives them as one `Opts`."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        o = Opts(
            json=bool(kwargs.pop("json_out")),
            local=bool(kwargs.pop("local")),
            socket=_path(kwargs.pop("socket")),
            token=_str(kwargs.pop("token")),
            state_dir=_path(kwargs.pop("state_dir")) or Path(".state"),
            inventory=_path(kwargs.pop("inventory_path")),
            roles=_path(kwargs.pop("roles")),
        )
        return fn(o, *args, **kwargs)

    out: Callable[_P, _R] = wrapper
    for option in reversed(_OPTIONS):
        out = option(out)
    return out


def _path(value: object) -> Path | None:
    return Path(str(value)) if value is not None else None


def _str(value: object) -> str | None:
    return str(value) if value is not None else None


sites_option = click.option(
    "--site",
    "--sites",
    "-s",
    "sites",
    multiple=True,
    help="Only this site (repeatable; default: the playbook's targets).",
)


def _pairs(what: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], JSON]:
    def parse(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> JSON:
        out: JSON = {}
        for raw in values:
            key, sep, value = raw.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise click.BadParameter(f"{raw!r}: expected {what}")
            if key.strip() in out:
                raise click.BadParameter(f"{key.strip()} given twice")
            out[key.strip()] = value.strip()
        return out

    return parse


params_option = click.option(
    "--param",
    "params",
    multiple=True,
    callback=_pairs("NAME=VALUE"),
    help="A playbook parameter, e.g. --param zone=guest (repeatable).",
)


# -- talking to the daemon, or to the same API in this process ---------------------------------


@dataclass
class Conn:
    client: Client
    service: Service | None = None  # --local: the engine in this process


@contextlib.contextmanager
def connect(o: Opts, *, changes: bool = False, drives: bool = False) -> Iterator[Conn]:
    """The daemon's client; with --local, a client of the same API served in this process.

    `changes`: the command changes something, so --local is refused while a daemon owns the
    state directory (the two would drive the same runs). `drives`: this process will drive a
    run (--local), so it gets the twin's flow probes when the twin is up.
    """
    if not o.local:
        with Client(o.socket_path(), token=o.token) as client:
            yield Conn(client)
        return
    from agent import audit  # noqa: PLC0415 - --local only
    from agent.daemon.api import make_app  # noqa: PLC0415
    from agent.daemon.auth import (  # noqa: PLC0415
        Policy,
        check_local_roles,
        default_roles_path,
    )
    from agent.daemon.main import state_lock  # noqa: PLC0415
    from agent.daemon.service import local  # noqa: PLC0415
    from agent.inventory import default_path  # noqa: PLC0415

    audit.configure(console=False)
    check_local_roles(o.roles or default_roles_path(), uid=os.geteuid(), state_dir=o.state_dir)
    policy = Policy.load(o.roles)
    with contextlib.ExitStack() as stack:
        if changes:
            stack.enter_context(state_lock(o.state_dir, shared=True))
        service = stack.enter_context(local(o.inventory or default_path(), o.state_dir))
        if drives:
            from agent.cli.commands.resume import twin_verifier  # noqa: PLC0415

            service.verifier = twin_verifier(service.inv, service.journal.device_states)
        sock = stack.enter_context(_serve_here(make_app(service, policy)))
        client = stack.enter_context(Client(sock, token=o.token))
        yield Conn(client, service)


@contextlib.contextmanager
def _serve_here(app: web.Application) -> Iterator[Path]:
    """Serve `app` on a private socket (a fresh 0700 directory) from a thread of this process."""
    from agent.daemon.api import start  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="cordon-local-"))
    sock = tmp / "api.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="cordon-local-api", daemon=True)
    thread.start()
    try:
        runner = asyncio.run_coroutine_threadsafe(start(app, sock), loop).result(timeout=30)
        try:
            yield sock
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)


# -- small renderers ---------------------------------------------------------------------------


def _style(o: Opts, text: str, **kw: Any) -> str:
    return click.style(text, **kw) if o.color else text


def _ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min ago"
    return f"{s // 86400} d ago"


def _when(ts: object) -> str:
    """Local time, and how long ago: what a person reads at 3 am."""
    if not isinstance(ts, int | float):
        return "-"
    at = datetime.fromtimestamp(ts).astimezone()
    now = datetime.now().astimezone()
    shown = at.strftime("%H:%M:%S" if at.date() == now.date() else "%Y-%m-%d %H:%M")
    return f"{shown} ({_ago(time.time() - ts)})"


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _mode_color(mode: str) -> str:
    return {"normal": "green", "isolated": "yellow", "reconnected": "cyan"}.get(mode, "magenta")


# -- status ------------------------------------------------------------------------------------


def render_status(o: Opts, data: JSON) -> str:
    sites: list[JSON] = data.get("sites", [])
    width = max([len(s["site"]) for s in sites] + [4]) + 2
    lines = [f"{'SITE':<{width}}{'MODE':<14}{'LEVEL':<7}{'SINCE':<24}{'BY':<12}RUN"]
    for s in sites:
        mode = str(s["mode"])
        row = (
            f"{s['site']:<{width}}"
            + _style(o, f"{mode:<14}", fg=_mode_color(mode))
            + f"{s.get('level') or '-':<7}{_when(s.get('since')) if s.get('since') else '-':<24}"
            + f"{s.get('by') or '-':<12}{s.get('run_id') or '-'}"
        )
        if s.get("locked_by") and s.get("locked_by") != s.get("run_id"):
            row += f"  held by run {s['locked_by']}"
        elif s.get("locked_by"):
            row += "  (held)"
        if s.get("drift"):
            row += "  " + _style(o, f"DRIFT x{len(s['drift'])}", fg="red", bold=True)
        lines.append(row)
    alarms: list[JSON] = data.get("drift_alarms", [])
    if alarms:
        lines.append("")
        lines.append(
            _style(
                o,
                f"DRIFT: {len(alarms)} open alarm(s): a device no longer shows what Cordon did",
                fg="red",
                bold=True,
            )
        )
        for a in alarms:
            lines.append(
                _style(o, f"  {a['site']}  {a['device']}: {a['detail']}", fg="red")
                + f"  (since {_when(a.get('first_seen'))})"
            )
    runs: list[JSON] = data.get("open_runs", [])
    lines.append("")
    if runs:
        lines.append(f"open runs ({len(runs)}):")
        for r in runs:
            lines.append(
                f"  {r['run_id']}  {r['playbook']}  by {r['actor']}  on {', '.join(r['sites'])}"
                f"  steps {r['steps_done']}/{r['steps_total']}"
            )
            lines.append(f"      {_waiting_text(r)}")
    else:
        lines.append("no open run")
    incidents: list[JSON] = data.get("incidents", [])
    if incidents:
        lines.append(f"open incidents ({len(incidents)}):")
        for i in incidents:
            lines.append(
                f"  {i['incident_id']}  {i['name']}"
                + (f" at {i['site']}" if i.get("site") else "")
                + f"  opened {_when(i.get('opened_at'))} by {i.get('opened_by')}: {i.get('reason')}"
            )
    poll = data.get("last_poll")
    if isinstance(poll, dict):
        counts = ", ".join(f"{k} {v}" for k, v in (poll.get("counts") or {}).items())
        lines.append(f"last drift poll: {_when(poll.get('at'))}: {counts}")
    return "\n".join(lines)


def _waiting_text(r: JSON) -> str:
    status = r.get("status")
    waiting = r.get("waiting")
    if r.get("interrupted"):
        pid = r.get("driver_pid")
        was = f" (its process {pid} is gone)" if pid else ""
        return (
            f"INTERRUPTED: no process drives it{was}; `cordon resume {r['run_id']}` "
            "settles it and goes on (or start the daemon: it takes it on)"
        )
    if r.get("stop_requested"):
        return f"stopping: {r['stop_requested']}"
    if status == "awaiting_approval":
        what = waiting or "approval by a second operator"
        return f"waits for: {what} (`cordon approve {r['run_id']}`)"
    if waiting:
        return f"waits for: {waiting}"
    return "working"


# -- plan --------------------------------------------------------------------------------------


def _counts(plan: JSON) -> dict[str, int]:
    impact: list[JSON] = plan.get("impact", [])
    return {
        "cut": sum(fi["change"] == "cut" for fi in impact),
        "reopened": sum(fi["change"] == "reopened" for fi in impact),
        "kept": sum(
            fi["must_survive"] and fi["change"] in ("stays open", "reopened") for fi in impact
        ),
        "must_cut": sum(fi["must_survive"] and fi["change"] == "cut" for fi in impact),
        "open_after": sum(fi["change"] in ("stays open", "reopened") for fi in impact),
        "flows": len(impact),
    }


def render_plan(o: Opts, plan: JSON, *, commands: bool = True) -> str:
    lines = [
        _style(
            o,
            f"plan: {plan['playbook']} (level {plan['level']}) on {len(plan['sites'])} site(s): "
            + ", ".join(plan["sites"]),
            bold=True,
        )
    ]
    for step in plan["steps"]:
        head = f"-- {step['site']} / {step['step']} [{step['action']}]"
        if not step["changes"] and step["action"] in (
            "cut_link",
            "block_zones",
            "shut_zone_ports",
            "shut_port",
            "allow_flow",
        ):
            head += "  no change (already in that state)"
        lines.append(head)
        lines += [f"   note: {n}" for n in step["notes"]]
        for c in step["changes"]:
            lines.append(f"   {c['device']} ({c['platform']}, {c['method']})")
            if commands:
                lines += [f"     + {x}" for x in c["commands"]]
                lines += [f"     undo: {x}" for x in c["undo"]]
    lines += _impact_lines(o, plan)
    lines += [
        f"   cut   {fi['flow']}" + ("  [MUST SURVIVE]" if fi["must_survive"] else "")
        for fi in plan["impact"]
        if fi["change"] == "cut"
    ]
    lines += [_style(o, f"REFUSED: {r}", fg="red", bold=True) for r in plan.get("refusals", [])]
    return "\n".join(lines)


def _impact_lines(o: Opts, plan: JSON) -> list[str]:
    n = _counts(plan)
    text = (
        f"impact: {n['cut']} flows cut, {n['kept']} must-survive flows kept open, "
        f"{n['open_after']} of {n['flows']} open after"
    )
    if n["reopened"]:
        text += f", {n['reopened']} reopened"
    return [_style(o, text, bold=True)]


def render_plan_brief(o: Opts, plan: JSON) -> str:
    """One line per site: its steps, with the number of devices each changes."""
    lines = [
        _style(
            o,
            f"plan: {plan['playbook']} (level {plan['level']}) on {len(plan['sites'])} site(s)",
            bold=True,
        )
    ]
    by_site: dict[str, list[str]] = {}
    for step in plan["steps"]:
        n = len(step["changes"])
        by_site.setdefault(step["site"], []).append(
            step["step"] + (f" ({n} device{'s' if n != 1 else ''})" if n else "")
        )
    for site, steps in by_site.items():
        lines.append(f"  {site}: " + " > ".join(steps))
    return "\n".join(lines)


def confirmation(o: Opts, plan: JSON) -> str:
    """Exactly what will be cut (and reopened): sites, links, flows; then the question."""
    n = _counts(plan)
    devices = int(plan.get("changes", 0))
    lines = [
        _style(
            o,
            f"{plan['playbook']} will change {devices} device(s) on {len(plan['sites'])} "
            f"site(s): {', '.join(plan['sites'])}",
            bold=True,
        )
    ]
    for link in plan.get("links", []):
        verb = link["change"]
        lines.append(
            "  "
            + _style(o, f"{verb.upper():<9}", fg="red" if verb == "cut" else "green")
            + f"{link['site']}  {link['kind']} link {link['link']}"
            f" ({link['device']} {link['interface']})"
        )
    flows = f"  {n['cut']} flow(s) cut, {n['kept']} must-survive flow(s) kept open"
    if n["reopened"]:
        flows += f", {n['reopened']} flow(s) reopened"
    lines.append(_style(o, flows, bold=True))
    if n["must_cut"]:
        lines.append(
            _style(
                o, f"  {n['must_cut']} MUST-SURVIVE flow(s) CUT (allow_cut)", fg="red", bold=True
            )
        )
    if plan.get("emergency"):
        lines.append("  emergency playbook")
    if plan.get("approval") == "two_person":
        lines.append("  two-person rule: a second operator must approve before anything is sent")
    return "\n".join(lines)


def _refuse_unsafe(plan: JSON) -> None:
    refusals = plan.get("refusals") or []
    if refusals:
        raise PlanError(
            "plan refused: " + "; ".join(refusals),
            hint="nothing was sent; keep the flow open with an allow_flow step, or name it "
            "under allow_cut if cutting it is intended",
        )


# -- following a run ---------------------------------------------------------------------------

_STEP_COLOR = {"verified": "green", "failed": "red", "undone": "yellow", "undo_failed": "red"}
_GATE_COLOR = {
    "passed": "green",
    "skipped": None,
    "failed": "red",
    "reisolated": "red",
    "expired": "red",
}


class _View:
    """Progress for a person: notes (a step done, a gate passed) above one bar line redrawn in
    place on a terminal; off a terminal, notes and each new kind of wait, one line each."""

    BAR = 24

    def __init__(self, o: Opts) -> None:
        self.o = o
        self.enabled = not o.json
        self.tty = self.enabled and sys.stdout.isatty()
        self.line = ""
        self.last_kind = ""
        self.steps: dict[int, str] = {}
        self.gates: dict[tuple[str, str], str] = {}

    def note(self, text: str, fg: str | None = None) -> None:
        if not self.enabled:
            return
        self._clear()
        click.echo(_style(self.o, text, fg=fg) if fg else text)
        self._draw()

    def update(self, run: JSON) -> None:
        for s in run.get("steps", []):
            status = str(s["status"])
            if self.steps.get(s["seq"]) != status:
                self.steps[s["seq"]] = status
                if status in _STEP_COLOR:
                    error = f": {s['error']}" if s.get("error") and status != "verified" else ""
                    self.note(
                        f"  {s['site']}  {s['step']}  {s['device']} ({s['method']}): "
                        f"{status}{error}",
                        _STEP_COLOR[status],
                    )
        for g in run.get("gates", []):
            key, status = (g["site"], g["step"]), str(g["status"])
            if self.gates.get(key) != status:
                self.gates[key] = status
                if status in _GATE_COLOR:
                    why = (g.get("detail") or {}).get("reason") or (g.get("detail") or {}).get(
                        "why"
                    )
                    self.note(
                        f"  {g['site']}  {g['step']}: {status}" + (f" ({why})" if why else ""),
                        _GATE_COLOR[status],
                    )
        waiting = _waiting_text(run) if run["status"] in OPEN else ""
        done, total = int(run.get("steps_done", 0)), int(run.get("steps_total", 0))
        if self.tty:
            filled = self.BAR * done // total if total else self.BAR
            bar = "#" * filled + "-" * (self.BAR - filled)
            self.line = f"[{bar}] {done}/{total} steps  {waiting}"
            self._draw()
        elif self.enabled and waiting:
            kind = re.sub(r"\d+", "#", waiting)
            if kind != self.last_kind:
                self.last_kind = kind
                click.echo(f"  {waiting}")

    def close(self) -> None:
        self._clear()
        self.line = ""

    def _draw(self) -> None:
        if self.tty and self.line:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            click.echo("\r\x1b[K" + self.line[:width], nl=False)

    def _clear(self) -> None:
        if self.tty and self.line:
            click.echo("\r\x1b[K", nl=False)


def follow(o: Opts, conn: Conn, run_id: str) -> JSON:
    """Show the run until it ends; with --local, drive it in a thread of this process."""
    view = _View(o)
    stop = threading.Event()
    failure: list[BaseException] = []
    worker: threading.Thread | None = None
    service = conn.service
    if service is not None:

        def drive() -> None:
            try:
                service.drive(run_id, stop=stop)
            except BaseException as exc:  # handed to the main thread
                failure.append(exc)

        worker = threading.Thread(target=drive, name=f"cordon-run-{run_id}", daemon=True)
        worker.start()
    try:
        while True:
            run = conn.client.show(run_id)
            view.update(run)
            if run["status"] not in OPEN:
                break
            if failure:
                raise failure[0]
            if worker is not None and not worker.is_alive():
                worker.join()
            time.sleep(0.5 if service is not None else 1.0)
    except KeyboardInterrupt:
        view.close()
        where = (
            f"nobody drives it now: `cordon resume {run_id}` (or start the daemon: it takes it on)"
            if service is not None
            else f"the daemon goes on with it: `cordon show {run_id}`"
        )
        click.echo(f"\ninterrupted: run {run_id} stays open; {where}", err=True)
        raise SystemExit(INTERRUPTED) from None
    finally:
        stop.set()
        view.close()
    if worker is not None:
        worker.join(timeout=60)
    return run


def _final(o: Opts, run: JSON) -> str:
    status = str(run["status"])
    took = ""
    if isinstance(run.get("finished_at"), int | float) and isinstance(
        run.get("created_at"), int | float
    ):
        took = f" in {run['finished_at'] - run['created_at']:.1f} s"
    verified = sum(s["status"] == "verified" for s in run.get("steps", []))
    head = _style(
        o,
        f"run {run['run_id']}: {status}{took} ({verified} of {run.get('steps_total', 0)} steps "
        "verified)",
        fg="green" if status == "done" else "red",
        bold=True,
    )
    lines = [head]
    if run.get("detail"):
        lines.append(f"  {run['detail']}")
    rid = run["run_id"]
    hints = {
        "failed": f"see `cordon show {rid}`; `cordon rollback {rid}` undoes what it did",
        "rolled_back": f"a step failed and the whole run was undone: `cordon show {rid}`",
        "partial": f"some sites keep their changes: `cordon show {rid}`, `cordon status`",
        "reisolated": f"a soak caught an anomaly and isolated the zone again: `cordon show {rid}`",
        "expired": "no second operator approved in time: nothing was sent; run it again",
        "rollback_failed": (
            f"an undo failed: devices in an unknown state, their sites stay held; "
            f"`cordon rollback {rid}` retries"
        ),
    }
    changed = any(s["status"] in ("verified", "failed", "undo_failed") for s in run["steps"])
    if status == "failed" and not changed:
        hints[status] = f"no device was changed; see `cordon show {rid}`"
    if status in hints:
        lines.append(f"  next: {hints[status]}")
    return "\n".join(lines)


def _exit_for(status: str) -> int:
    if status in OPEN:
        return 0
    return RUN_EXIT.get(status, 4)


# -- the commands ------------------------------------------------------------------------------


@click.command("status")
@common
def status_cmd(o: Opts) -> None:
    """Every site: mode, level, since when, by whom, the run holding it, drift alarms; open runs
    and what they wait for; open incidents."""
    with connect(o) as conn:
        data = conn.client.status()
    if o.json:
        _echo_json(data)
    else:
        click.echo(render_status(o, data))


@click.command("plan")
@click.argument("playbook")
@sites_option
@params_option
@click.option("--brief", is_flag=True, help="Devices and impact only, without the commands.")
@common
def plan_cmd(o: Opts, playbook: str, sites: tuple[str, ...], params: JSON, brief: bool) -> None:
    """What PLAYBOOK would do: commands and undo per device, and which flows it cuts. Exit 3
    (and REFUSED lines) when it would cut a must-survive flow or a management interface."""
    with connect(o) as conn:
        plan = conn.client.plan(playbook, sites=list(sites) or None, params=params or None)
    if o.json:
        _echo_json(plan)
    else:
        click.echo(render_plan(o, plan, commands=not brief))
    _refuse_unsafe(plan)


@click.command("run")
@click.argument("playbook")
@sites_option
@params_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--reason", default=None, help="Why (recorded; mandatory for on-call break-glass).")
@click.option(
    "--attest",
    "attest",
    multiple=True,
    callback=_pairs("ZONE=REASON"),
    help="Attest a zone is clean before it is reconnected: ZONE=REASON (repeatable).",
)
@click.option("--soak-seconds", type=int, default=None, help="Every soak this long (drills).")
@click.option("--detach", is_flag=True, help="Return once started; the daemon goes on.")
@common
def run_cmd(
    o: Opts,
    playbook: str,
    sites: tuple[str, ...],
    params: JSON,
    yes: bool,
    reason: str | None,
    attest: JSON,
    soak_seconds: int | None,
    detach: bool,
) -> None:
    """Run PLAYBOOK: show the plan, confirm what it cuts, start it, follow it to its end.

    Exit 0 done (or started, with --detach); 4 failed, 15 rolled back, 16 partial,
    17 re-isolated by a soak, 18 approval expired, 19 rollback failed."""
    if detach and o.local:
        raise ConfigError(
            "--detach needs the daemon: with --local, this process is what drives the run",
            hint="start `cordon daemon`, or drop --detach",
        )
    with connect(o, changes=True, drives=True) as conn:
        wanted = list(sites) or None
        plan = conn.client.plan(playbook, sites=wanted, params=params or None)
        if not o.json:
            click.echo(render_plan_brief(o, plan))
        _refuse_unsafe(plan)
        if not plan.get("changes"):
            if o.json:
                _echo_json({"run_id": None, "status": "no_change", "plan": plan})
            else:
                click.echo("nothing to change: every targeted device is already in that state")
            return
        click.echo(confirmation(o, plan), err=o.json)
        if not yes and not _confirmed(o):
            click.echo("not started: nothing was sent", err=True)
            raise SystemExit(INTERRUPTED)
        started = conn.client.run(
            playbook,
            digest=str(plan["digest"]),
            sites=wanted,
            reason=reason,
            attest=attest or None,
            soak_seconds=soak_seconds,
            params=params or None,
        )
        run_id = str(started["run_id"])
        _announce(o, started)
        if detach:
            run = conn.client.show(run_id)
            if o.json:
                _echo_json(run)
            else:
                click.echo(f"  {_waiting_text(run)}")
                click.echo(f"  follow it with `cordon show {run_id}` or `cordon status`")
            return
        run = follow(o, conn, run_id)
    if o.json:
        _echo_json(run)
    else:
        click.echo(_final(o, run))
    code = _exit_for(str(run["status"]))
    if code:
        raise SystemExit(code)


def _confirmed(o: Opts) -> bool:
    try:
        return click.confirm("Go ahead?", err=o.json)
    except click.Abort:  # end of input, or Ctrl-C at the question
        click.echo("", err=True)
        return False


def _announce(o: Opts, started: JSON) -> None:
    if o.json:
        return
    run_id = started["run_id"]
    click.echo(_style(o, f"run {run_id} started", bold=True))
    if started.get("break_glass"):
        text = "  break-glass: your reason is recorded, the run flagged for review"
        click.echo(_style(o, text, fg="yellow"))
    if started.get("needs_approval"):
        text = f"  waits for a second operator: `cordon approve {run_id}`"
        click.echo(_style(o, text, fg="yellow"))


@click.command("approve")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why you approve (recorded).")
@common
def approve_cmd(o: Opts, run_id: str, reason: str | None) -> None:
    """Second operator: approve RUN_ID (two-person rule; never the run's own author)."""
    with connect(o, changes=True) as conn:
        out = conn.client.approve(run_id, reason=reason)
    if o.json:
        _echo_json(out)
        return
    what = out.get("approved")
    step = "" if what in (None, "run") else f" (step {what})"
    click.echo(f"run {run_id}{step} approved by {out.get('by')}")
    click.echo(_goes_on(o, run_id))


def _goes_on(o: Opts, run_id: str) -> str:
    if o.local:
        return (
            f"  no daemon: the run goes on in the `cordon run --local` following it, "
            f"or with `cordon resume {run_id}`"
        )
    return f"  the daemon goes on with it now: `cordon show {run_id}`"


@click.command("attest")
@click.argument("run_id")
@click.argument("site")
@click.argument("zone")
@click.option("--reason", required=True, help="Who checked what (recorded).")
@common
def attest_cmd(o: Opts, run_id: str, site: str, zone: str, reason: str) -> None:
    """Attest that ZONE at SITE is clean, so RUN_ID may reconnect it."""
    with connect(o, changes=True) as conn:
        out = conn.client.attest(run_id, site=site, zone=zone, reason=reason)
    if o.json:
        _echo_json(out)
        return
    click.echo(f"run {run_id}: zone {zone} at {site} attested clean by {out.get('by')}")
    click.echo(_goes_on(o, run_id))


@click.command("rollback")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (recorded).")
@common
def rollback_cmd(o: Opts, run_id: str, reason: str | None) -> None:
    """Restore the state before RUN_ID on every device it changed (twice changes nothing).
    Exit 0 rolled back (or nothing to roll back), 19 when an undo failed."""
    with connect(o, changes=True) as conn:
        out = conn.client.rollback(run_id, reason=reason)
    status = str(out["status"])
    if o.json:
        _echo_json(out)
    else:
        for s in out.get("steps", []):
            click.echo(
                f"  {s['device']}  {s['step']}: "
                + _style(o, s["status"], fg=_STEP_COLOR.get(s["status"]))
            )
        ok = status in ("rolled_back", "nothing_to_roll_back", "cancelled")
        click.echo(
            _style(
                o,
                f"run {run_id}: {status.replace('_', ' ')}",
                fg="green" if ok else "red",
                bold=True,
            )
        )
        if not ok:
            click.echo(f"  next: `cordon rollback {run_id}` retries the failed undos")
    if status == "rollback_failed":
        raise SystemExit(RUN_EXIT["rollback_failed"])
    if status not in ("rolled_back", "nothing_to_roll_back", "cancelled"):
        raise SystemExit(4)


@click.command("runs")
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@common
def runs_cmd(o: Opts, limit: int) -> None:
    """Recent runs, newest first."""
    with connect(o) as conn:
        data = conn.client.runs(limit=limit)
    if o.json:
        _echo_json(data)
        return
    runs: list[JSON] = data.get("runs", [])
    if not runs:
        click.echo("no run yet")
    # columns as wide as their longest value: a long playbook name never runs into the actor
    pw = max((len(str(r["playbook"])) for r in runs), default=0) + 2
    aw = max((len(str(r["actor"])) for r in runs), default=0) + 2
    for r in runs:
        status = str(r["status"])
        color = (
            "green" if status in ("done", "rolled_back") else "yellow" if status in OPEN else "red"
        )
        click.echo(
            f"{r['run_id']}  "
            + _style(o, f"{status:<18}", fg=color)
            + f"{r['playbook']:<{max(pw, 22)}}{r['actor']:<{max(aw, 10)}}"
            + f"{_when(r.get('created_at')):<24}"
            + ", ".join(r["sites"])
            + ("  [break-glass]" if r.get("break_glass") else "")
        )


@click.command("show")
@click.argument("run_id")
@common
def show_cmd(o: Opts, run_id: str) -> None:
    """One run: status, what it waits for, every step and gate, attestations, approval."""
    with connect(o) as conn:
        run = conn.client.show(run_id)
    if o.json:
        _echo_json(run)
    else:
        click.echo(render_run(o, run))


def render_run(o: Opts, run: JSON) -> str:
    status = str(run["status"])
    lines = [
        _style(o, f"run {run['run_id']}  {run['playbook']} ({run['level']})  {status}", bold=True),
        f"  sites: {', '.join(run['sites'])}",
        f"  by {run['actor']}, started {_when(run.get('created_at'))}"
        + (f", finished {_when(run['finished_at'])}" if run.get("finished_at") else ""),
    ]
    if run.get("reason"):
        lines.append(f"  reason: {run['reason']}")
    if run.get("break_glass"):
        lines.append(_style(o, "  break-glass: flagged for review", fg="yellow"))
    if status in OPEN:
        lines.append(_style(o, f"  {_waiting_text(run)}", fg="yellow"))
    if run.get("detail"):
        lines.append(f"  detail: {run['detail']}")
    lines.append(f"  steps {run['steps_done']}/{run['steps_total']}:")
    for s in run.get("steps", []):
        lines.append(
            f"    {s['seq']:>3}  {s['site']}  {s['step']}  {s['device']} ({s['method']})  "
            + _style(o, str(s["status"]), fg=_STEP_COLOR.get(s["status"]))
            + (f"  {s['error']}" if s.get("error") else "")
        )
    gates: list[JSON] = run.get("gates", [])
    if gates:
        lines.append("  gates:")
        for g in gates:
            detail = g.get("detail") or {}
            extra = detail.get("reason") or detail.get("why") or ""
            if detail.get("kind") == "soak" and g["status"] == "open":
                extra = f"until {_when(detail.get('until'))}, {detail.get('ticks', 0)} checks"
            lines.append(
                f"    {g['site']}  {g['step']}  "
                + _style(o, str(g["status"]), fg=_GATE_COLOR.get(g["status"]) or None)
                + (f"  {extra}" if extra else "")
            )
    for a in run.get("attestations", []):
        lines.append(f"  attested: {a['site']}/{a['zone']} by {a['actor']}: {a['reason']}")
    approval = run.get("approval")
    if isinstance(approval, dict):
        lines.append(
            f"  approved by {approval['actor']} {_when(approval.get('at'))}"
            + (f": {approval['reason']}" if approval.get("reason") else "")
        )
    return "\n".join(lines)


@click.group("incident")
def incident_group() -> None:
    """Declare an incident (its timeline gathers the runs) or close it."""


@incident_group.command("open")
@click.option("--name", default=None, help="A short id-like name, e.g. ransomware-rennes.")
@click.option("--site", default=None, help="The site hit.")
@click.option("--reason", required=True, help="What happened (recorded).")
@common
def incident_open(o: Opts, name: str | None, site: str | None, reason: str) -> None:
    """Declare an incident (e.g. the attack at one site)."""
    with connect(o, changes=True) as conn:
        out = conn.client.incident("open", name=name, site=site, reason=reason)
    if o.json:
        _echo_json(out)
    else:
        click.echo(f"incident {out['incident_id']} open: {out['name']}")


@incident_group.command("close")
@click.argument("name", required=False)
@click.option("--reason", required=True, help="Why it is over (recorded).")
@common
def incident_close(o: Opts, name: str | None, reason: str) -> None:
    """Close NAME (its id or name; default: the open incident)."""
    with connect(o, changes=True) as conn:
        out = conn.client.incident("close", name=name, reason=reason)
    if o.json:
        _echo_json(out)
    else:
        click.echo(f"incident {out['incident_id']} closed")


@incident_group.command("notify")
@click.argument("incident", required=False)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(
        ["nis2_early_warning", "nis2_notification", "nis2_final_report", "cnil", "ars"]
    ),
    help="Which notification (the audit report's regulatory clocks).",
)
@click.option("--to", "to", required=True, help="Who was notified (authority, desk).")
@click.option("--ref", required=True, help="The notification's reference (receipt, ticket).")
@common
def incident_notify(o: Opts, incident: str | None, kind: str, to: str, ref: str) -> None:
    """Record that a regulator was notified about INCIDENT (default: the open incident)."""
    with connect(o, changes=True) as conn:
        out = conn.client.notify(incident=incident, kind=kind, to=to, ref=ref)
    if o.json:
        _echo_json(out)
    else:
        click.echo(f"incident {out['incident_id']}: {kind} to {to} recorded (ref {ref})")


@click.command("daemon")
@click.option(
    "--inventory",
    "-i",
    "inventory_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Inventory (default: $CORDON_INVENTORY or the example).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    envvar=ENV_STATE_DIR,
    default=".state",
    show_default=True,
    help="Journal, job store, health (default: $CORDON_STATE_DIR).",
)
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    default=None,
    help="Unix socket of the API (default: <state-dir>/cordon.sock).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between drift polls of every device; 0: no polling.",
)
@click.option(
    "--roles",
    type=click.Path(path_type=Path),
    default=None,
    help="Roles file (default: $CORDON_ROLES or inventory/roles.yaml).",
)
@click.option("--socket-group", default=None, help="Group whose members may use the socket.")
def daemon_cmd(
    inventory_path: Path | None,
    state_dir: Path,
    socket: Path | None,
    poll_interval: float,
    roles: Path | None,
    socket_group: str | None,
) -> None:
    """Run the daemon in the foreground: the API on a Unix socket, runs with their timed gates
    (soaks, approvals) across restarts, drift polling. Stops cleanly on SIGTERM or SIGINT."""
    from agent.daemon.auth import default_roles_path  # noqa: PLC0415
    from agent.daemon.main import DaemonConfig, run  # noqa: PLC0415
    from agent.inventory import default_path  # noqa: PLC0415

    state = Path(state_dir)
    run(
        DaemonConfig(
            inventory=(inventory_path or default_path()).absolute(),
            state_dir=state.absolute(),
            socket=(socket or state / SOCKET_NAME).absolute(),
            roles=(roles or default_roles_path()).absolute(),
            poll_interval=poll_interval,
            group=socket_group,
        )
    )


COMMANDS: tuple[click.Command, ...] = (
    daemon_cmd,
    status_cmd,
    plan_cmd,
    run_cmd,
    approve_cmd,
    attest_cmd,
    rollback_cmd,
    runs_cmd,
    show_cmd,
    incident_group,
)
