"""Security of the drivers against the twin: a changed or unknown SSH host key is refused before
any credential is sent, naming the device and both fingerprints; wrong SSH or SNMP credentials
are refused; loose secret files are refused before connecting; no secret of the twin appears in
any error text."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers import Target
from agent.drivers.ssh import fingerprint, parse_public_key, pinned_keys
from agent.errors import AuthError, CordonError, HostKeyError, SecretError
from agent.platforms.registry import driver_for, one_shot
from tests.drivers import twinhelp as th
from tests.drivers.conftest import Secrets
from tests.drivers.keys import new_ed25519, write_private, write_secret
from tests.drivers.twinhelp import Lab

pytestmark = pytest.mark.twin

# one cisco_ios and one cisco_iosxe (netmiko), one linux_nftables (paramiko)
DEVICES = ["nts-sw1", "rns-sw1", "bz2-fw1"]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private directory for throw-away keys and pins, removed after the test."""
    with tempfile.TemporaryDirectory(prefix="cordon-drv-") as d:
        os.chmod(d, 0o700)
        yield Path(d)


def real_fingerprint(target: Target) -> str:
    keys = pinned_keys(target).keys
    assert len(keys) == 1
    return fingerprint(keys[0])


def auth_attempts(lab: Lab, device: str) -> int:
    """Authentication attempts the device's sshd logged (accepted or failed)."""
    log = th.sshd_log(lab, device)
    return (
        log.count("Accepted publickey")
        + log.count("Failed publickey")
        + log.count("Failed password")
    )


@pytest.mark.parametrize("device", DEVICES)
def test_changed_host_key_is_refused_before_authenticating(
    lab: Lab, scratch: Path, device: str
) -> None:
    """A pin that does not match the device's key stops the connection before any credential
    is sent; the error names the device, the pinned and the presented fingerprints."""
    real = th.target(lab, device)
    other = new_ed25519()
    (scratch / "known_hosts").write_text(f"{real.address} {other.public_line}\n")
    bad = dataclasses.replace(real, known_hosts=scratch / "known_hosts")
    before = auth_attempts(lab, device)
    with pytest.raises(HostKeyError) as info:
        driver_for(bad).connect()
    err = info.value
    assert err.device == device and err.operation == "connect"
    assert err.expected == fingerprint(parse_public_key(other.public_line))
    assert real_fingerprint(real) in err.seen
    assert err.expected in str(err) and real_fingerprint(real) in str(err)
    assert "changed host key" in str(err)
    assert auth_attempts(lab, device) == before  # no credential was offered
    with one_shot(real):
        pass
    assert auth_attempts(lab, device) > before  # ...while a pinned connection does log one


def test_changed_inline_pin_is_refused(lab: Lab) -> None:
    """An inline `ssh.host_key` pin is honoured the same way (it wins over known_hosts)."""
    real = th.target(lab, "rns-sw2")
    other = new_ed25519()
    ssh = real.device.ssh.model_copy(update={"host_key": other.public_line})
    bad = dataclasses.replace(real, device=real.device.model_copy(update={"ssh": ssh}))
    with pytest.raises(HostKeyError, match="rns-sw2") as info:
        driver_for(bad).connect()
    assert info.value.expected == fingerprint(parse_public_key(other.public_line))


@pytest.mark.parametrize("device", DEVICES)
def test_unknown_host_is_refused(lab: Lab, scratch: Path, device: str) -> None:
    """A device with no pin at all is refused (never trusted on first use)."""
    real = th.target(lab, device)
    (scratch / "known_hosts").write_text("")
    with pytest.raises(HostKeyError, match="unknown host key") as info:
        driver_for(dataclasses.replace(real, known_hosts=scratch / "known_hosts")).connect()
    assert info.value.expected is None
    assert real_fingerprint(real) in info.value.seen


@pytest.mark.parametrize("device", DEVICES)
def test_wrong_ssh_key_is_refused(lab: Lab, scratch: Path, device: str) -> None:
    """A client key the device does not know gives AuthError naming the device."""
    real = th.target(lab, device)
    assert real.device.ssh.key == "file:.secrets/ssh/cordon_ed25519"
    write_private(scratch / ".secrets" / "ssh" / "cordon_ed25519", new_ed25519())
    bad = dataclasses.replace(real, base_dir=scratch)  # same pins, another key
    with pytest.raises(AuthError, match=f"{device}: connect: the device refused the SSH key"):
        driver_for(bad).connect()


def test_loose_key_file_is_refused_before_connecting(lab: Lab, scratch: Path) -> None:
    """A private key readable by others is refused (SecretError), no authentication tried."""
    real = th.target(lab, "bz2-fw1")  # an SSH firewall (linux_nftables)
    key = write_private(scratch / ".secrets" / "ssh" / "cordon_ed25519", new_ed25519())
    key.chmod(0o644)
    before = auth_attempts(lab, "bz2-fw1")
    with pytest.raises(SecretError, match="readable by its owner only"):
        driver_for(dataclasses.replace(real, base_dir=scratch)).connect()
    assert auth_attempts(lab, "bz2-fw1") == before


def test_wrong_snmp_credentials_are_refused(lab: Lab, scratch: Path) -> None:
    """A wrong SNMPv3 auth passphrase, or an unknown user, gives AuthError naming the device."""
    real = th.target(lab, "rns-sw1")
    for name in ("auth", "priv"):
        write_secret(scratch / ".secrets" / "snmp" / name, f"not-the-passphrase-{name}")
    with pytest.raises(
        AuthError, match=r"rns-sw1: connect: SNMP credentials refused \(WrongDigest"
    ):
        driver_for(dataclasses.replace(real, base_dir=scratch), via="snmp").connect()
    assert real.device.snmp is not None
    snmp = real.device.snmp.model_copy(update={"user": "nobody"})
    stranger = dataclasses.replace(real, device=real.device.model_copy(update={"snmp": snmp}))
    with pytest.raises(AuthError, match="UnknownUserName"):
        driver_for(stranger, via="snmp").connect()


def test_no_secret_in_any_error_text(lab: Lab, scratch: Path, twin_secrets: Secrets) -> None:
    """Every refusal above, rendered as text with its hint, holds no secret of the twin."""
    real = th.target(lab, "rns-sw1")
    write_private(scratch / ".secrets" / "ssh" / "cordon_ed25519", new_ed25519())
    for name in ("auth", "priv"):
        write_secret(scratch / ".secrets" / "snmp" / name, f"not-the-passphrase-{name}")
    (scratch / "known_hosts").write_text(f"{real.address} {new_ed25519().public_line}\n")
    texts = []
    for bad, via in (
        (dataclasses.replace(real, known_hosts=scratch / "known_hosts"), "ssh"),
        (dataclasses.replace(real, base_dir=scratch), "ssh"),
        (dataclasses.replace(real, base_dir=scratch), "snmp"),
    ):
        with pytest.raises(CordonError) as info:
            driver_for(bad, via=via).connect()  # type: ignore[arg-type]
        texts.append(f"{info.value} {info.value.hint or ''} {info.value!r}")
    assert texts
    for secret in twin_secrets:
        for line in [secret, *secret.splitlines()]:
            if len(line.strip()) >= 16:
                assert all(line.strip() not in t for t in texts)
