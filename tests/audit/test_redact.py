"""Redaction: registered secrets, device-CLI secret idioms and secret-named keys are masked."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from agent.audit.redact import (
    REDACTED,
    is_secret_key,
    needs_scrub,
    redact_event,
    redact_keys,
    register_secret,
    scrub,
    scrub_bytes,
)

# Unique per test module: the registry is process-wide and never cleared (other suites rely on it).
SECRET = 'Rd-7q"x\\Zr!9'


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_secret(SECRET)


def test_registered_secret_is_scrubbed_in_plain_text() -> None:
    """A registered value is replaced wherever it occurs in text."""
    assert scrub(f"login ok with {SECRET} on sw1") == f"login ok with {REDACTED} on sw1"


@pytest.mark.parametrize(
    "encoded",
    [
        json.dumps(SECRET)[1:-1],
        repr(SECRET)[1:-1],
        quote(SECRET, safe=""),
        base64.b64encode(SECRET.encode()).decode(),
    ],
    ids=["json", "repr", "url", "base64"],
)
def test_registered_secret_is_scrubbed_in_common_encodings(encoded: str) -> None:
    """JSON-escaped, repr-escaped, URL-encoded and base64 forms of a secret are masked too."""
    assert encoded != SECRET
    assert scrub(f"x {encoded} y") == f"x {REDACTED} y"


def test_empty_secret_is_ignored() -> None:
    """Registering an empty string does not blank out every log line."""
    register_secret("")
    assert scrub("interface Gi0/1") == "interface Gi0/1"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("snmp-server community Publ1cRW RW", "snmp-server community [REDACTED] RW"),
        ("enable secret 5 $1$mERr$hx5", "enable secret 5 [REDACTED]"),
        (
            "username admin privilege 15 password 0 T0psy",
            "username admin privilege 15 password 0 [REDACTED]",
        ),
        (
            "snmp-server user ops g3 v3 auth sha AuthPw1 priv aes 128 PrivPw2",
            "snmp-server user ops g3 v3 auth sha [REDACTED] priv aes 128 [REDACTED]",
        ),
        ("set psk Zz9!", "set psk [REDACTED]"),
        ("https://ops:S3cr3t@vault.local/v1", "https://ops:[REDACTED]@vault.local/v1"),
        ("api_token=abc123&page=2", "api_token=[REDACTED]&page=2"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----", REDACTED),
        ("interface GigabitEthernet0/12\n shutdown", "interface GigabitEthernet0/12\n shutdown"),
    ],
)
def test_cli_secret_idioms_are_scrubbed(line: str, expected: str) -> None:
    """Secrets typed into device commands are masked even if nobody registered them."""
    assert scrub(line) == expected


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "snmp_community",
        "auth-key",
        "PRIV_KEY",
        "private_key",
        "api_token",
        "passphrase",
    ],
)
def test_secret_named_keys_are_detected(key: str) -> None:
    """Keys naming a secret are recognised whatever their case or separator."""
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["device", "secret_ref", "config_after_sha256", "token_id"])
def test_pointer_keys_are_not_secret(key: str) -> None:
    """Keys that only point at a secret or at evidence stay readable."""
    assert not is_secret_key(key)


def test_redact_keys_masks_nested_values() -> None:
    """Secret-named keys are masked at any depth, in mappings and lists of mappings."""
    event = {
        "event": "device.change",
        "params": {"community": "Publ1c", "port": "Gi0/1"},
        "users": [{"name": "ops", "password": "x"}],
        "secret_ref": "vault:sw1",
    }
    assert redact_keys(event) == {
        "event": "device.change",
        "params": {"community": REDACTED, "port": "Gi0/1"},
        "users": [{"name": "ops", "password": REDACTED}],
        "secret_ref": "vault:sw1",
    }


def test_redact_event_scrubs_every_string() -> None:
    """The full redaction scrubs strings inside lists, tuples and nested mappings."""
    event = {"commands": ("conf t", f"key {SECRET}"), "meta": {"note": SECRET}, "n": 3}
    assert redact_event(event) == {
        "commands": ["conf t", f"key {REDACTED}"],
        "meta": {"note": REDACTED},
        "n": 3,
    }


def test_needs_scrub_spots_a_secret_in_serialized_json() -> None:
    """The fast test finds a secret inside a JSON-serialized record, escaped as JSON escapes it."""
    assert needs_scrub(json.dumps({"note": f"pw {SECRET}"}))
    assert not needs_scrub(json.dumps({"note": "interface Gi0/1 shutdown"}))


def test_scrub_bytes_keeps_undecodable_bytes() -> None:
    """Binary device output keeps its non-UTF-8 bytes while secrets are masked."""
    data = b"\xff\xfe banner " + SECRET.encode() + b"\n"
    assert scrub_bytes(data) == b"\xff\xfe banner " + REDACTED.encode() + b"\n"
