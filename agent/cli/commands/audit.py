"""`cordon audit`: verify the chain, seal its head, report timelines and regulatory clocks.

Imports click, `agent.settings` and `agent.audit` modules; never the engine or device libraries.
Raises `CordonError`s (`ChainBroken` on tampering, `TornWrite` for a cut last write,
`TailUnsealed` for records not sealed yet); `agent.cli` turns them into text and exit codes.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import settings
from agent.audit import report as reports
from agent.audit.chain import ChainWriter
from agent.audit.pgchain import TABLE, PgChainWriter, is_url
from agent.audit.pipeline import default_log_dir, seal_signer
from agent.audit.seals import (
    ENV_PUBLIC_KEY,
    ENV_SEAL_KEY,
    Sealer,
    SyslogTarget,
    generate_key,
    key_id,
    load_public_key,
)
from agent.audit.since import parse_moment
from agent.audit.source import ChainSource
from agent.audit.verify import Verification, verify, verify_url
from agent.errors import AuditError, ChainBroken, ConfigError, TailUnsealed, TornWrite

_SHOWN_FINDINGS = 20
_HINT = (
    "keep every file of the log directory untouched as evidence; compare with the remote "
    "syslog seals and backups, and tell the investigators"
)


@click.group("audit")
def audit() -> None:
    """Verify, seal and report on the hash-chained audit log."""


_PUBLIC_KEY_HELP = (
    f"The seal public key pinned for this log: 'ed25519:<base64>' or file:PATH (default "
    f"${ENV_PUBLIC_KEY}). Without one the seals are not anchored and the output says so."
)


def _public_key(option: str | None) -> Ed25519PublicKey | None:
    """The pinned seal public key: --public-key, else $CORDON_AUDIT_SEAL_PUBKEY, else none."""
    spec, source = option, "--public-key"
    if not spec:
        spec, source = settings.current().audit_seal_pubkey, f"${ENV_PUBLIC_KEY}"
    if not spec:
        return None
    return load_public_key(spec, what=f"seal public key ({source})", base_dir=Path.cwd())


def _text(result: Verification) -> str:
    signed = f", {result.signed_seals} signed by key {result.key}" if result.key else ""
    held = f"{len(result.files)} file(s)" if not is_url(result.path) else f"table {TABLE}"
    lines = [
        f"{result.verdict.upper()}: {result.path}: {result.records} record(s) in "
        f"{held}, seq {result.first_seq}..{result.head_seq}, "
        f"{result.seals} seal(s){signed}",
    ]
    if result.head_hash:
        lines.append(f"head: seq {result.head_seq} {result.head_hash} at {result.head_where}")
    if result.torn:
        lines.append(f"torn: {result.torn}")
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


def _not_ok(result: Verification) -> AuditError | None:
    if not result.ok:
        return _broken(result)
    if result.torn is not None:
        return TornWrite(
            f"audit log: the last write was cut at {result.torn.split(': ', 1)[0]}; every "
            "record before it verifies (not tampering)",
            hint="a crash or a full disk interrupted the writer; free space, then let Cordon "
            "continue: the next record starts on a new line and chains to the last good one",
        )
    if result.unsealed:
        return TailUnsealed(
            f"audit log intact, but its last {result.unsealed} record(s) are not covered by a "
            f"{'signed ' if result.key else ''}seal yet",
            hint="normal while a writer runs (it seals every minute and at exit); "
            "`cordon audit seal` seals the head now",
        )
    return None


def _pg_chain() -> str | None:
    """The PostgreSQL URL the chain lives in ($CORDON_STATE_URL when it is one), or None."""
    url = settings.current().state_url
    return url if url and is_url(url) else None


def _check_url(url: str) -> None:
    """A URL given on the command line: the rules of $CORDON_STATE_URL (a valid postgresql://
    URL, no password: it would be echoed in the output and in every error), else `ConfigError`
    (the URL itself is not shown)."""
    problem = settings.state_url_problem(url)
    if problem is not None:
        raise ConfigError(
            f"the audit chain URL {settings.redact_url(url)} cannot be used: {problem}",
            hint="give postgresql://USER@HOST:PORT/DATABASE (or postgresql:///DATABASE?host="
            "/socket/dir) and put a password, if one is needed, in ~/.pgpass (PGPASSFILE)",
        )


def chain_source(log_dir: Path | None) -> ChainSource:
    """The chain a report or a draft reads: `--log-dir` when given (a log directory, always);
    else the group's chain in $CORDON_STATE_URL when that is PostgreSQL; else $CORDON_LOG_DIR,
    else ./logs."""
    if log_dir is not None:
        return ChainSource(log_dir=log_dir)
    url = _pg_chain()
    return ChainSource(url=url) if url is not None else ChainSource(log_dir=default_log_dir())


@audit.command("verify")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--public-key", "public_key", metavar="KEY", help=_PUBLIC_KEY_HELP)
def verify_cmd(path: str | None, as_json: bool, public_key: str | None) -> None:
    """Check the chain, order, seals and evidence of PATH (a log directory, one file, or a
    postgresql:// URL: the group's chain when the state is on PostgreSQL).

    PATH defaults to the chain in $CORDON_STATE_URL when that is PostgreSQL, else
    $CORDON_LOG_DIR, else ./logs. Exits 8 and names the first edited, deleted, inserted,
    reordered, renamed, forged or fenced item, or the truncated tail, when the log was tampered
    with; 21 when only the last write was cut (crash, full disk); 20 when every record verifies
    but the newest are not sealed yet; 0 otherwise. Without a pinned public key it says loudly
    that the seals are not anchored (and exits as above).
    """
    key = _public_key(public_key)
    url = path if path is not None and is_url(path) else (_pg_chain() if path is None else None)
    if path is not None and url is not None:
        _check_url(path)
    if url is not None:
        result = verify_url(url, public_key=key)
    else:
        result = verify(Path(path) if path else default_log_dir(), public_key=key)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(_text(result))
    error = _not_ok(result)
    if error is not None:
        raise error


@audit.command("seal")
@click.argument("path", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option("--syslog", metavar="TARGET", help="Also send the seal to udp://host:port or tcp://.")
def seal_cmd(path: Path | None, syslog: str | None) -> None:
    """Seal the chain head of PATH now (the daemon also seals periodically and at exit).

    Without PATH, the chain in $CORDON_STATE_URL when that is PostgreSQL, else $CORDON_LOG_DIR,
    else ./logs."""
    key_ref = settings.current().audit_seal_key
    signer = seal_signer(key_ref) if key_ref else None
    url = _pg_chain() if path is None else None
    writer: ChainWriter | PgChainWriter = (
        ChainWriter(path or default_log_dir())
        if url is None
        else PgChainWriter(url, who=lambda: (settings.current().node_id or "cli", None))
    )
    try:
        target = SyslogTarget.parse(syslog) if syslog else None
        seal = Sealer(writer, syslog=target, signer=signer, interval=0).seal("demand")
    finally:
        writer.close()
    if seal is None:
        click.echo("nothing to seal: the log is empty or its head is already sealed")
    else:
        signed = f", signed by key {seal['key']}" if signer else ""
        click.echo(f"sealed seq {seal['seq']} {seal['hash']} in {seal['file']}{signed}")
    if signer is None:
        click.secho(
            f"warning: the seal is not signed (${ENV_SEAL_KEY} is not set): it anchors nothing",
            fg="red",
            err=True,
        )


@audit.command("keygen")
@click.argument("keyfile", type=click.Path(path_type=Path, dir_okay=False))
def keygen_cmd(keyfile: Path) -> None:
    """Create the Ed25519 key that signs seals: the private key in KEYFILE (mode 0600).

    Prints the public key to pin where the log writer cannot change it: `--public-key` or
    $CORDON_AUDIT_SEAL_PUBKEY for `audit verify`. Give the writer (daemon, --local commands)
    $CORDON_AUDIT_SEAL_KEY=file:KEYFILE. Never overwrites an existing file.
    """
    pem, public = generate_key()
    try:
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise AuditError(
            f"{keyfile} already exists: not overwritten",
            hint="choose another file name, or remove the old key once no log needs it",
        ) from None
    except OSError as exc:
        raise AuditError(f"cannot create {keyfile}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    kid = key_id(load_public_key(public, what="new key"))
    click.echo(f"private key: {keyfile} (mode 0600: only the account that runs Cordon reads it)")
    click.echo(f"public key {kid}: {public}")
    click.echo(f"writer:   export {ENV_SEAL_KEY}=file:{keyfile.absolute()}")
    click.echo(f"verifier: export {ENV_PUBLIC_KEY}='{public}'")


@audit.command("report")
@click.option("--incident", "incident", metavar="ID", help="Its records, declaration to close.")
@click.option("--run", "run", metavar="RUN_ID", help="Records of this run.")
@click.option(
    "--since",
    "since",
    metavar="WHEN",
    help="Records from WHEN: 1h, 30m, 2d, today, yesterday, or an ISO-8601 date/time (UTC).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(reports.FORMATS),
    default="text",
    show_default=True,
    help="text for the terminal; html to read or print (one self-contained page); md, csv, json.",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Log directory (default: the chain in $CORDON_STATE_URL when that is PostgreSQL, "
    "else $CORDON_LOG_DIR, else ./logs).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--public-key", "public_key", metavar="KEY", help=_PUBLIC_KEY_HELP)
@click.option("--at", "at", metavar="TIME", hidden=True, help="Evaluate the clocks at TIME.")
def report_cmd(
    *,
    incident: str | None,
    run: str | None,
    since: str | None,
    fmt: str,
    log_dir: Path | None,
    output: Path | None,
    public_key: str | None,
    at: str | None,
) -> None:
    """The incident record: summary, sites and time to contain, what is still degraded,
    regulatory clocks and notifications, flow verification, then the timeline (who did what,
    commands once, human durations) and the chain head that proves it.

    The whole chain is verified first; a log that does not verify is said at the top of the
    report and on stderr, and the command exits 8 after writing it. The chain read is the
    group's in PostgreSQL when $CORDON_STATE_URL is one (records, seals and evidence from the
    database), unless --log-dir names a log directory.
    """
    now = reports.parse_time(at, now=datetime.now(UTC)) if at else datetime.now(UTC)
    moment = parse_moment(since, now=now) if since else None
    source = chain_source(log_dir)
    key = _public_key(public_key)
    with source.open(verify=True, public_key=key) as read:  # verified and read in one pass
        integrity = read.integrity
        assert integrity is not None
        built = reports.build(read, incident=incident, run=run, since=moment, now=now)
    text = reports.render(built, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)
    if not integrity.ok:
        raise _broken(integrity)
