"""Following a run to its end: read it through the API as it changes (a long-poll of the daemon;
with --local, woken by the run's driver thread, which runs in this process meanwhile), show steps
and gates as they change (a progress bar redrawn in place on a terminal, one line per new wait
off it). Ctrl-C leaves the run open and says who goes on with it.

Imports click, `agent.cli.{options,session,render}`, the wire models and `agent.status`.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time

import click

from agent.cli.options import Opts
from agent.cli.render import style
from agent.cli.render.runs import GATE_COLOR, STEP_COLOR
from agent.cli.render.status import waiting_text
from agent.cli.session import Conn
from agent.status import INTERRUPTED, OPEN, StepStatus
from agent.wire import RunView

__all__ = ["follow"]

LONG_POLL_S = 10.0  # how long one request to the daemon waits for the run to change
LONG_POLL_GAP_S = 0.05  # between two: a run changing at every step is not read at every step


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
        click.echo(style(self.o, text, fg=fg) if fg else text)
        self._draw()

    def update(self, run: RunView) -> None:
        for s in run.steps:
            status = str(s.status)
            if self.steps.get(s.seq) != status:
                self.steps[s.seq] = status
                if status in STEP_COLOR:
                    error = f": {s.error}" if s.error and status != StepStatus.VERIFIED else ""
                    self.note(
                        f"  {s.site}  {s.step}  {s.device} ({s.method}): {status}{error}",
                        STEP_COLOR[status],
                    )
        for g in run.gates:
            key, status = (g.site, g.step), str(g.status)
            if self.gates.get(key) != status:
                self.gates[key] = status
                if status in GATE_COLOR:
                    why = (g.detail or {}).get("reason") or (g.detail or {}).get("why")
                    self.note(
                        f"  {g.site}  {g.step}: {status}" + (f" ({why})" if why else ""),
                        GATE_COLOR[status],
                    )
        waiting = waiting_text(run) if run.status in OPEN else ""
        done, total = run.steps_done, run.steps_total
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


def follow(o: Opts, conn: Conn, run_id: str) -> RunView:
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
        if worker is not None:
            run = _driven_here(conn, run_id, view, worker, failure)
        else:
            run = _driven_by_daemon(conn, run_id, view)
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


def _driven_here(
    conn: Conn,
    run_id: str,
    view: _View,
    worker: threading.Thread,
    failure: list[BaseException],
) -> RunView:
    """--local: read the run until it ends, waking as soon as its driver thread returns."""
    while True:
        run = conn.client.show(run_id)
        view.update(run)
        if run.status not in OPEN:
            return run
        if failure:
            raise failure[0]
        if worker.is_alive():
            # wake as soon as the run's driver returns (the run ended or waits), not at the
            # next tick: an on-call person pays every tenth of a second (#18)
            worker.join(timeout=0.5)
        else:
            time.sleep(0.5)


def _driven_by_daemon(conn: Conn, run_id: str, view: _View) -> RunView:
    """Through the daemon: a long-poll answers as soon as the run changed (or ended), not at
    the next tick of a poll (#18)."""
    since: str | None = None
    while True:
        asked = time.monotonic()
        run, version = conn.client.watch(run_id, since=since, wait=LONG_POLL_S)
        view.update(run)
        if run.status not in OPEN:
            return run
        if version == since and time.monotonic() - asked < LONG_POLL_S / 2:
            time.sleep(1.0)  # a daemon from before the long-poll answers at once: poll it
        else:
            since = version
            time.sleep(LONG_POLL_GAP_S)
