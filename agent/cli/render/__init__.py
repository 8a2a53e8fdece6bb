"""Text for a person: one module per thing shown (status, plan, runs, a run report), rendered from
the API's wire models (`agent.wire`); here the small shared helpers (colour, times,
JSON output).

Imports click and `agent.cli.options` only; never the client, the service or the engine (the
renderers import the wire models; the resume report takes the run's `RunReport`, a frozen value).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from agent.cli.options import Opts

__all__ = ["ago", "echo_json", "style", "when"]


def style(o: Opts, text: str, **kw: Any) -> str:
    return click.style(text, **kw) if o.color else text


def ago(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min ago"
    return f"{s // 86400} d ago"


def when(ts: object) -> str:
    """Local time, and how long ago: what a person reads at 3 am."""
    if not isinstance(ts, int | float):
        return "-"
    at = datetime.fromtimestamp(ts).astimezone()
    now = datetime.now().astimezone()
    shown = at.strftime("%H:%M:%S" if at.date() == now.date() else "%Y-%m-%d %H:%M")
    return f"{shown} ({ago(time.time() - ts)})"


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
