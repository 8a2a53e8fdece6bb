"""Secret redaction: the registry of known secret values, and scrubbing of text, bytes and events.

A leaf module: imports nothing from the project (the secret resolver imports it, never the reverse).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "REDACTED",
    "is_secret_key",
    "needs_scrub",
    "redact_event",
    "redact_keys",
    "register_secret",
    "scrub",
    "scrub_bytes",
]

REDACTED = "[REDACTED]"

# Words that make an event key secret-bearing, after lower-casing and "-" -> "_".
_SECRET_KEY_WORDS = (
    "password",
    "passwd",
    "secret",
    "passphrase",
    "private_key",
    "privkey",
    "priv_key",
    "auth_key",
    "authkey",
    "community",
    "token",
    "api_key",
    "apikey",
    "credential",
    "authorization",
    "cookie",
    "psk",
)
# Keys that only *point at* a secret (or hash evidence) stay readable: `secret_ref`, `*_sha256`.
_NOT_SECRET_SUFFIXES = ("_ref", "_sha256", "_id")

# Device-CLI idioms that carry a secret in the next token(s). Applied to every string: a value
# the resolver never saw (typed by hand in a playbook, echoed by a device) is still masked.
_KEYWORD = (
    r"password|passwd|secret|community|key-string|passphrase|pre-shared-key|psk|"
    r"auth-key|authentication-key|priv-key|private-key|token"
)
# Words of prose, never a secret value, after such a keyword: "the bearer token presented
# matches no one" stays readable (issue #11). A secret registered with the resolver is masked
# anyway, whatever word it is.
_PROSE = (
    r"(?:presented|matches|matched|is|was|are|were|has|have|had|for|of|to|from|in|on|at|"
    r"with|without|and|or|not|no|the|a|an|file|files|reference|ref|refused|rejected|missing|"
    r"expired|invalid|unknown|changed|required|needed|must|may|mismatch|length|stored|given|"
    r"resolved|cannot|could|should|would|will)\b"
)
_CLI_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole block.
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S
        ),
        REDACTED,
    ),
    # `enable secret 5 $1$x`, `username u password 0 x`, `snmp-server community x RO`, `psk x`.
    (
        re.compile(
            rf"(?i)(?<![a-z0-9])({_KEYWORD})(\s+(?:[0-9]\s+)?)(?!\[REDACTED\]|{_PROSE})[^\s\"',;]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # `password=x`, `token: x`, `"secret": "x"` inside free text or key=value configs.
    (
        re.compile(rf"(?i)(?<![a-z0-9])({_KEYWORD})(\"?\s*[=:]\s*\"?)(?!\[REDACTED\])[^\s\"',;&]+"),
        r"\1\2" + REDACTED,
    ),
    # SNMPv3 user definitions: `auth sha X priv aes 128 Y`.
    (
        re.compile(r"(?i)\b(auth\s+(?:md5|sha\S*)\s+)(?!\[REDACTED\])\S+"),
        r"\1" + REDACTED,
    ),
    (
        re.compile(r"(?i)\b(priv\s+(?:des\S*|3des|aes\S*)(?:\s+\d+)?\s+)(?!\[REDACTED\])\S+"),
        r"\1" + REDACTED,
    ),
    # Credentials in URLs: scheme://user:pass@host.
    (re.compile(r"(://[^:/\s@]+:)[^@/\s]+@"), r"\1" + REDACTED + "@"),
)
_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def _variants(value: str) -> set[str]:
    """The forms under which a secret value may show up in text we log or store."""
    forms = {
        value,
        json.dumps(value, ensure_ascii=False)[1:-1],  # inside a JSON string
        json.dumps(value)[1:-1],
        repr(value)[1:-1],  # inside a Python repr (exception messages)
        quote(value, safe=""),  # URL-encoded
        quote_plus(value),
    }
    raw = value.encode("utf-8")
    b64 = base64.b64encode(raw).decode("ascii")
    forms.update({b64, b64.rstrip("="), base64.urlsafe_b64encode(raw).decode("ascii")})
    return {f for f in forms if f}


def register_secret(value: str) -> None:
    """Remember a secret value so that `scrub` masks it (and its common encodings) from now on.

    The secret resolver calls this for every value it resolves. Empty strings are ignored. Short
    values are still registered: a mangled log line is better than a leaked password.
    """
    global _secret_re  # noqa: PLW0603 - the registry is this module's one piece of global state
    if not value:
        return
    with _lock:
        new = _variants(value) - _secrets
        if not new:
            return
        _secrets.update(new)
        alternation = "|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))
        _secret_re = re.compile(alternation)


def scrub(text: str) -> str:
    """`text` with every registered secret and every CLI secret idiom replaced by [REDACTED]."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if _has_cli_trigger(text):
        for rule, replacement in _CLI_RULES:
            text = rule.sub(replacement, text)
    return text


def _has_cli_trigger(text: str) -> bool:
    """Cheap pre-test before any CLI rule runs: most strings and records pass untouched."""
    low = text.lower()
    # Unrolled on purpose: this runs on every record and a generator costs more than the tests.
    return (
        "pass" in low
        or "secret" in low
        or "communit" in low
        or "key" in low
        or "psk" in low
        or "token" in low
        or "auth" in low
        or "priv" in low
        or "-----begin" in low
        or "://" in low
    )


def needs_scrub(text: str) -> bool:
    """True when `scrub(text)` could change `text`; a fast test for whole serialized records."""
    pattern = _secret_re
    return (pattern is not None and pattern.search(text) is not None) or _has_cli_trigger(text)


def scrub_bytes(data: bytes) -> bytes:
    """`scrub` for raw device output or configuration: undecodable bytes are kept as they are."""
    text = data.decode("utf-8", errors="surrogateescape")
    return scrub(text).encode("utf-8", errors="surrogateescape")


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when an event key names a secret (`password`, `snmp_community`, `auth-key`, ...)."""
    name = key.lower().replace("-", "_")
    if name.endswith(_NOT_SECRET_SUFFIXES):
        return False
    return any(word in name for word in _SECRET_KEY_WORDS)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return redact_event(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return scrub(bytes(value).decode("utf-8", errors="replace"))
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _redact_nested(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact_keys(value)
    if isinstance(value, list | tuple) and any(type(v) not in _SCALARS for v in value):
        return [_redact_nested(v) for v in value]
    return value


def redact_keys(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `event` where the values of secret-named keys (at any depth) are [REDACTED]."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        if value is not None and type(key) is str and is_secret_key(key):
            out[key] = REDACTED
        elif type(value) in _SCALARS:
            out[key] = value
        else:
            out[key] = _redact_nested(value)
    return out


def redact_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `event` where secret-named keys are masked and every string is scrubbed.

    Nested mappings and sequences are walked; keys are scrubbed too (a secret used as a key).
    """
    out: dict[str, Any] = {}
    for key, value in event.items():
        skey = scrub(key) if isinstance(key, str) else str(key)
        if isinstance(key, str) and is_secret_key(key) and value is not None:
            out[skey] = REDACTED
        else:
            out[skey] = _redact_value(value)
    return out
