"""Host-key pins are found where the inventory says (inline, else the group known_hosts, with
non-22 ports as `[addr]:port`), and fingerprints read exactly like OpenSSH's: no device needed."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from agent.drivers.base import Target
from agent.drivers.ssh import fingerprint, parse_public_key, pinned_keys
from agent.errors import HostKeyError
from agent.inventory.models import (
    Device,
    DeviceRole,
    Management,
    SshSettings,
)
from tests.drivers.keys import new_ed25519


def target(tmp: Path, *, port: int = 22, host_key: str | None = None) -> Target:
    device = Device(
        name="sw1",
        role=DeviceRole.ACCESS_SWITCH,
        platform="cisco_ios",
        management=Management(address=ipaddress.IPv4Address("198.19.0.5"), interface="mgmt0"),
        ssh=SshSettings(username="root", key="file:k", port=port, host_key=host_key),
    )
    return Target(device=device, site="s", base_dir=tmp, known_hosts=tmp / "known_hosts")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    """Our SHA256 fingerprint is the one `ssh-keygen -lf` prints for the same key."""
    pair = new_ed25519()
    pub = tmp_path / "k.pub"
    pub.write_text(pair.public_line + "\n")
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fingerprint(parse_public_key(pair.public_line)) == out.split()[1]


def test_known_hosts_pin_is_found_by_address_and_port(tmp_path: Path) -> None:
    """Port 22 pins are looked up by address, other ports as `[address]:port`."""
    a, b = new_ed25519(), new_ed25519()
    (tmp_path / "known_hosts").write_text(
        f"198.19.0.5 {a.public_line}\n[198.19.0.5]:2222 {b.public_line}\n"
    )
    assert pinned_keys(target(tmp_path)).keys == (parse_public_key(a.public_line),)
    assert pinned_keys(target(tmp_path, port=2222)).keys == (parse_public_key(b.public_line),)


def test_inline_pin_wins_over_known_hosts(tmp_path: Path) -> None:
    """A device's own `ssh.host_key` is the pin, whatever the known_hosts file says."""
    a, b = new_ed25519(), new_ed25519()
    (tmp_path / "known_hosts").write_text(f"198.19.0.5 {a.public_line}\n")
    pins = pinned_keys(target(tmp_path, host_key=b.public_line + " comment"))
    assert pins.keys == (parse_public_key(b.public_line),)
    assert "inventory" in pins.source


def test_missing_known_hosts_means_no_pin(tmp_path: Path) -> None:
    """No known_hosts file is no pin (the connection will be refused), never an implicit trust."""
    pins = pinned_keys(target(tmp_path))
    assert pins.keys == () and "missing" in pins.source


def test_unusable_inline_pin_is_a_host_key_error(tmp_path: Path) -> None:
    """A malformed inline pin is refused with a HostKeyError naming the device."""
    with pytest.raises(HostKeyError, match="sw1"):
        pinned_keys(target(tmp_path, host_key="ssh-ed25519 not-base64!"))


def test_paramiko_key_equality_is_by_key_material() -> None:
    """Two parses of one public key are equal; another key is not (the pin comparison)."""
    a, b = new_ed25519(), new_ed25519()
    assert parse_public_key(a.public_line) == parse_public_key(a.public_line)
    assert parse_public_key(a.public_line) != parse_public_key(b.public_line)
    assert isinstance(parse_public_key(a.public_line), paramiko.Ed25519Key)
