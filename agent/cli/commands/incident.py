"""`cordon incident open|close|notify|draft`: declare an incident, close it, record a regulator's
notification, draft one from the audit log.

Imports click, `agent.cli.{options,session,render}`, and `agent.audit` reading modules (the
drafts read the chain directly, like `cordon audit report`: the group's in PostgreSQL when the
state is there).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from agent import settings
from agent.audit import drafts
from agent.audit.seals import ENV_PUBLIC_KEY, load_public_key
from agent.audit.since import parse_moment
from agent.cli.commands.audit import chain_source
from agent.cli.options import Opts, common
from agent.cli.render import echo_json
from agent.cli.session import connect
from agent.errors import ChainBroken, ConfigError

__all__ = ["incident_group"]


@click.group("incident")
def incident_group() -> None:
    """Declare an incident, close it, record and draft the regulators' notifications."""


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
        echo_json(out.wire())
    else:
        click.echo(f"incident {out.incident_id} open: {out.name}")


@incident_group.command("close")
@click.argument("name", required=False)
@click.option("--reason", required=True, help="Why it is over (recorded).")
@common
def incident_close(o: Opts, name: str | None, reason: str) -> None:
    """Close NAME (its id or name; default: the open incident)."""
    with connect(o, changes=True) as conn:
        out = conn.client.incident("close", name=name, reason=reason)
    if o.json:
        echo_json(out.wire())
    else:
        click.echo(f"incident {out.incident_id} closed")


# --to: (the kind the clocks read, the authority recorded)
RECIPIENTS: dict[str, tuple[str, str]] = {
    "ars": ("ars", "ARS"),
    "anssi-nis2-early": ("nis2_early_warning", "ANSSI"),
    "anssi-nis2-notification": ("nis2_notification", "ANSSI"),
    "anssi-nis2-final": ("nis2_final_report", "ANSSI"),
    "cnil": ("cnil", "CNIL"),
}


@incident_group.command("notify")
@click.argument("incident", required=False)
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Choice(sorted(RECIPIENTS)),
    help="Which notification was made (the audit report's regulatory clocks read it).",
)
@click.option(
    "--reference",
    "--ref",
    "ref",
    required=True,
    help="Its reference (the portal's receipt, the ticket): what an inspector asks for.",
)
@click.option(
    "--at",
    "at",
    metavar="WHEN",
    help="When it was made (default now): 30m, 2h, or an ISO-8601 time (UTC without a zone).",
)
@click.option("--by", "by", metavar="WHO", help="Who made it (default: you).")
@common
def incident_notify(
    o: Opts, incident: str | None, to: str, ref: str, at: str | None, by: str | None
) -> None:
    """Record that a regulator was notified about INCIDENT (default: the open incident).

    Audited as `regulatory.notified`; `cordon audit report` then shows that clock as met (or
    late). A time in the future, or an empty or multi-line reference, is refused: nothing is
    recorded.
    """
    kind, authority = RECIPIENTS[to]
    for name, value in (("--reference", ref), ("--by", by)):
        if value is not None and (not value.strip() or not value.isprintable()):
            raise ConfigError(
                f"{name} {value!r} is empty or holds control characters: nothing recorded",
                hint=f"give {name} as one line of text",
            )
    when: str | None = None
    if at is not None:
        now = datetime.now(UTC)
        moment = parse_moment(at, now=now, what="--at")
        if moment > now:
            raise ConfigError(
                f"--at {at!r} is in the future ({moment.isoformat(timespec='seconds')}): "
                "nothing recorded",
                hint="give the time the notification was made, or leave --at out for now",
            )
        when = moment.astimezone(UTC).isoformat(timespec="seconds")
    with connect(o, changes=True) as conn:
        out = conn.client.notify(
            incident=incident, kind=kind, to=authority, ref=ref, at=when, by=by
        )
    if o.json:
        echo_json(out.wire())
    else:
        made = f" at {out.at}" if out.at else ""
        click.echo(
            f"incident {out.incident_id}: {kind} to {authority}{made} by {out.by} recorded "
            f"(ref {out.ref})"
        )


@incident_group.command("draft")
@click.option(
    "--for",
    "kind",
    required=True,
    type=click.Choice(list(drafts.DRAFTS)),
    help="Which regulator's draft.",
)
@click.option("--incident", metavar="ID", help="The incident (default: the last one declared).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(drafts.FORMATS),
    default="text",
    show_default=True,
    help="text for the terminal, md, or html (one page, prints well).",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Log directory (default: the chain in $CORDON_STATE_URL when that is PostgreSQL, "
    "else $CORDON_LOG_DIR, else ./logs).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
def incident_draft(
    kind: str, incident: str | None, fmt: str, log_dir: Path | None, output: Path | None
) -> None:
    """A pre-filled draft for a regulator from the audit log: what happened, when it was known,
    which sites, the measures taken and when, what is still degraded, notifications made.

    Fields the log cannot answer are marked [À COMPLÉTER : ...] / [TO COMPLETE: ...]. The header
    names the log, the records' range and the chain head; a chain that does not verify is said
    at the top, and the command exits 8 after writing the draft. It reads the group's chain in
    PostgreSQL when $CORDON_STATE_URL is one, unless --log-dir names a log directory.
    """
    source = chain_source(log_dir)
    spec = settings.current().audit_seal_pubkey
    key = (
        load_public_key(spec, what=f"seal public key (${ENV_PUBLIC_KEY})", base_dir=Path.cwd())
        if spec
        else None
    )
    with source.open(verify=True, public_key=key) as read:  # verified and read in one pass
        integrity = read.integrity
        assert integrity is not None
        made = drafts.draft(kind, read, incident=incident)
    text = drafts.render(made, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"draft written to {output}", err=True)
    if not integrity.ok:
        raise ChainBroken(
            f"audit chain broken: first bad record at {integrity.findings[0]}",
            hint="the draft says so at its top; run `cordon audit verify` and keep the log as is",
        )
