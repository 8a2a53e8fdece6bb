"""`cordon api keygen|pin`: the identities of the daemon's API over TCP (README: High
availability). `keygen` makes a daemon's or an operator's certificate and key (self-signed ECDSA
P-256, `agent.mtls`, the same as `cordon probe keygen`) and prints its pin; `pin` prints the pin
of an existing certificate (what a client sets as CORDON_API_PIN). Imports click, `agent.mtls`
and `agent.errors`.
"""

from __future__ import annotations

from pathlib import Path

import click

from agent import mtls
from agent.errors import ConfigError


@click.group("api")
def api() -> None:
    """The daemon's API over TCP (TLS, client certificates): identities and pins."""


@api.command("keygen")
@click.argument("certificate", type=click.Path(path_type=Path))
@click.argument("key", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="The certificate's name (a node's, or an operator's).")
def keygen_cmd(certificate: Path, key: Path, name: str) -> None:
    """Make a self-signed identity in CERTIFICATE and KEY (0600, never overwritten) and print
    its pin: a daemon's (CORDON_API_TLS_CERT; its clients' CORDON_API_PIN) or an operator's
    (CORDON_API_CLIENT_CERT; listed under `certificates:` in the roles file)."""
    click.echo(mtls.new_identity(certificate, key, name, error=ConfigError))


@api.command("pin")
@click.argument("certificate", type=click.Path(path_type=Path))
def pin_cmd(certificate: Path) -> None:
    """Print the pin (sha256:...) of the PEM certificate CERTIFICATE."""
    click.echo(mtls.certificate_pin(certificate, error=ConfigError))
