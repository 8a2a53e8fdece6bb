"""`cordon audit`: verify the chain, seal its head, report timelines and regulatory clocks.

Imports click and `agent.audit` modules; never the engine or device libraries. Raises
`CordonError`s (`ChainBroken` on tampering); `agent.cli` turns them into text and exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.audit import report as reports
from agent.audit.chain import ChainWriter
from agent.audit.pipeline import default_log_dir
from agent.audit.seals import Sealer, SyslogTarget
from agent.audit.verify import Verification, verify
from agent.errors import ChainBroken

_SHOWN_FINDINGS = 20
_HINT = (
    "keep every file of the log directory untouched as evidence; compare with the remote "
    "syslog seals and backups, and tell the investigators"
)


@click.group("audit")
def audit() -> None:
    """Verify, seal and report on the hash-chained audit log."""


def _text(result: Verification) -> str:
    lines = [
        f"{'OK' if result.ok else 'BROKEN'}: {result.path}: {result.records} record(s) in "
        f"{len(result.files)} file(s), seq {result.first_seq}..{result.head_seq}, "
        f"{result.seals} seal(s)",
    ]
    if result.head_hash:
        lines.append(f"head: seq {result.head_seq} {result.head_hash} at {result.head_where}")
    lines += [f"  {f}" for f in result.findings[:_SHOWN_FINDINGS]]
    hidden = len(result.findings) - _SHOWN_FINDINGS + result.more_findings
    if hidden > 0:
        lines.append(f"  ... and {hidden} more finding(s) (use --json)")
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _broken(result: Verification) -> ChainBroken:
    first = result.findings[0]
    more = len(result.findings) - 1 + result.more_findings
    tail = f" (and {more} more finding(s))" if more else ""
    return ChainBroken(f"audit chain broken: first bad record at {first}{tail}", hint=_HINT)


@audit.command("verify")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def verify_cmd(path: Path | None, as_json: bool) -> None:
    """Check the chain, order, seals and evidence of PATH (a log directory or one file).

    PATH defaults to $CORDON_LOG_DIR, else ./logs. Exits 8 and names the first edited, deleted,
    inserted or reordered record, or the truncated tail, when the log was tampered with.
    """
    result = verify(path or default_log_dir())
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(_text(result))
    if not result.ok:
        raise _broken(result)


@audit.command("seal")
@click.argument("path", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--syslog", metavar="TARGET", help="Also send the seal to udp://host:port or tcp://.")
def seal_cmd(path: Path | None, syslog: str | None) -> None:
    """Seal the chain head of PATH now (the daemon also seals periodically and at exit)."""
    writer = ChainWriter(path or default_log_dir())
    try:
        target = SyslogTarget.parse(syslog) if syslog else None
        seal = Sealer(writer, syslog=target, interval=0).seal("demand")
    finally:
        writer.close()
    if seal is None:
        click.echo("nothing to seal: the log is empty or its head is already sealed")
    else:
        click.echo(f"sealed seq {seal['seq']} {seal['hash']} in {seal['file']}")


@audit.command("report")
@click.option("--incident", "incident", metavar="ID", help="Records of this incident.")
@click.option("--run", "run", metavar="RUN_ID", help="Records of this run.")
@click.option("--since", "since", metavar="TIME", help="Records at or after this ISO-8601 time.")
@click.option(
    "--format", "fmt", type=click.Choice(reports.FORMATS), default="md", show_default=True
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Log directory (default $CORDON_LOG_DIR, else ./logs).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--at", "at", metavar="TIME", hidden=True, help="Evaluate the clocks at TIME.")
def report_cmd(
    *,
    incident: str | None,
    run: str | None,
    since: str | None,
    fmt: str,
    log_dir: Path | None,
    output: Path | None,
    at: str | None,
) -> None:
    """Timeline of an incident, a run or a period, with the regulatory clocks.

    Declaration, decisions, approvals, break-glass uses, changes per device, verifications,
    reconnection attestations, drift alarms; NIS2 (24 h, 72 h, 1 month), CNIL (72 h) and ARS
    (without delay) counted from the declaration. The chain is verified first and the result
    is printed at the top of the report.
    """
    directory = log_dir or default_log_dir()
    integrity = verify(directory)
    built = reports.build(
        directory,
        incident=incident,
        run=run,
        since=reports.parse_time(since) if since else None,
        now=reports.parse_time(at) if at else None,
        integrity=integrity,
    )
    text = reports.render(built, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    if not integrity.ok:
        click.secho(f"warning: {built.integrity}", fg="red", err=True)
