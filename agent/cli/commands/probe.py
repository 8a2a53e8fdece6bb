"""`cordon probe run|keygen|status|schedule`: a site's probe point (#15), and the daemon side's
view of every probe point the inventory declares.

`run` is the probe process itself (on the probe host or VM, with its own config file); `keygen`
makes an identity (a probe's, or the daemon's toward probes) and prints its pin; `status` asks
every probe point for its hello (alive, authenticated, with the inventory's legs); `schedule`
gives each one its declared flows to open every N seconds. Imports click, `agent.probe`, the
verify layer's probe source and `agent.inventory`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.inventory import default_path, load
from agent.probe import channel, config, server
from agent.verify import probes


@click.group("probe")
def probe() -> None:
    """Probe points: the process a site runs, and the daemon side's view of them."""


@probe.command("run")
@click.argument("config_file", type=click.Path(path_type=Path))
def run_cmd(config_file: Path) -> None:
    """Run the probe point of CONFIG_FILE (until stopped): it listens for the daemon's orders
    over mutual TLS and opens the flows it is ordered to, from its own leg addresses only."""
    server.serve(config.load(config_file))


@probe.command("keygen")
@click.argument("certificate", type=click.Path(path_type=Path))
@click.argument("key", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The certificate's name (the probe's id, or cordon).")
def keygen_cmd(certificate: Path, key: Path, name: str) -> None:
    """Make a self-signed identity (ECDSA P-256) in CERTIFICATE and KEY (0600, never
    overwritten) and print its pin, for control.certificate or the group tls_pins file."""
    click.echo(channel.new_identity(certificate, key, name))


@probe.command("status")
@click.option("-i", "--inventory", "file", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
def status_cmd(file: Path | None, as_json: bool) -> None:
    """Which probe points answer, authenticated, with the legs the inventory gives them
    (exit 22 when one does not)."""
    found = probes.health(load(file or default_path()))
    if as_json:
        click.echo(json.dumps([h.__dict__ for h in found], indent=2))
    else:
        for h in found:
            click.echo(f"{h.site}/{h.id}: {'alive' if h.alive else 'NOT ALIVE'}: {h.detail}")
        if not found:
            click.echo("no probe point declared")
    if not all(h.alive for h in found):
        raise SystemExit(22)


@probe.command("schedule")
@click.option("-i", "--inventory", "file", type=click.Path(path_type=Path), default=None)
@click.option(
    "--every",
    type=click.FloatRange(0, 3600),
    required=True,
    help="Seconds between runs (5 to 3600; 0 stops the schedules).",
)
def schedule_cmd(file: Path | None, every: float) -> None:
    """Give every probe point its declared flows to open every N seconds."""
    answers = probes.schedule(load(file or default_path()), interval_s=every)
    for probe_id, said in answers.items():
        click.echo(f"{probe_id}: {said}")
    if any(s.startswith("failed") for s in answers.values()):
        raise SystemExit(22)
