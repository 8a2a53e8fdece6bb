"""Owns `cordon device check [--site S] [--json]`: a table or JSON; exit 6 if a device fails.
Must not import a device library or the engine; `agent.cli` registers it and renders errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from agent.cli.options import inventory_option
from agent.drivers.base import InterfaceState, Timeouts
from agent.drivers.check import DeviceCheck, check
from agent.errors import ConfigError, DeviceError
from agent.inventory import default_path, load


@click.group("device")
def device() -> None:
    """Reach the group's devices through the drivers (pinned SSH host keys, SNMPv3)."""


def _interfaces(ifs: tuple[InterfaceState, ...]) -> str:
    if not ifs:
        return "-"
    up = sum(1 for i in ifs if i.admin_up and i.oper_up is not False)
    down = [
        f"{i.name}({'admin' if not i.admin_up else 'oper'})"
        for i in ifs
        if not i.admin_up or i.oper_up is False
    ]
    text = f"{up} up"
    if down:
        text += f", down: {' '.join(down)}"
    return text


def render(results: list[DeviceCheck], elapsed: float) -> str:
    """The text table of a check (pure)."""
    head = (
        "DEVICE",
        "SITE",
        "PLATFORM",
        "ADDRESS",
        "SSH",
        "HOST KEY",
        "SNMP",
        "TIME",
        "INTERFACES",
    )
    rows = [
        (
            r.device,
            r.site,
            r.platform,
            r.address,
            r.ssh.status,
            r.host_key,
            r.snmp.status,
            f"{r.duration_s:.2f}s",
            _interfaces(r.interfaces),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    problems = [r for r in results if not r.ok]
    for r in problems:
        for what, probe in (("ssh", r.ssh), ("snmp", r.snmp)):
            if probe.status not in ("ok", "n/a"):
                lines.append(f"{r.device}: {what}: {probe.detail}")
    ok = len(results) - len(problems)
    lines.append(f"{ok}/{len(results)} device(s) fully reachable in {elapsed:.2f} s")
    return "\n".join(lines)


@device.command("check")
@click.option("--site", "site", default=None, help="Only the devices of this site.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@inventory_option
@click.option(
    "--timeout",
    "connect_timeout",
    type=click.FloatRange(min=0.5),
    default=10.0,
    show_default=True,
    help="Connect timeout per device, seconds.",
)
def check_cmd(
    site: str | None, as_json: bool, inventory_path: Path | None, connect_timeout: float
) -> None:
    """Reach every selected device in parallel: SSH (pinned host key), SNMP, interface facts."""
    inv = load(inventory_path or default_path())
    if site is not None and inv.site(site) is None:
        raise ConfigError(
            f"no site {site!r} in {inv.path}",
            hint="sites: " + ", ".join(s.name for s in inv.sites),
        )
    t0 = time.monotonic()
    results = check(inv, site=site, timeouts=Timeouts(connect=connect_timeout))
    elapsed = time.monotonic() - t0
    if as_json:
        doc = {
            "inventory": inv.path,
            "site": site,
            "elapsed_s": round(elapsed, 3),
            "ok": all(r.ok for r in results),
            "devices": [r.as_dict() for r in results],
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(render(results, elapsed))
    if not all(r.ok for r in results):
        raise SystemExit(DeviceError.exit_code)
