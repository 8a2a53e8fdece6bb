"""A device's configuration compared with its recorded baseline, apart from what isolation itself
changes (Cordon's nftables table, interfaces shut) and what changes by itself (counters, the
config's size line). Reconnection requires the match: a device an attacker reconfigured is not
reconnected. Pure."""

from __future__ import annotations

import hashlib
import re

from agent.inventory.models import Platform
from agent.platforms.linux_nftables.parse import extract_nft_table

_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_IOS_VOLATILE = re.compile(r"^(Building configuration|Current configuration|!Time:|! Last)")
_SHUT = re.compile(r"^\s*(no )?shutdown\s*$")


def normalize(platform: Platform, text: str) -> str:
    """The configuration minus isolation and volatile parts, one line per line, stripped."""
    if platform is Platform.LINUX_NFTABLES:
        ours = extract_nft_table(text)
        if ours:
            text = text.replace(ours, "")
        lines = [_COUNTER.sub("counter", ln) for ln in text.splitlines()]
    else:
        lines = [
            ln for ln in text.splitlines() if not _IOS_VOLATILE.match(ln) and not _SHUT.match(ln)
        ]
    return "\n".join(ln.rstrip() for ln in lines if ln.strip()) + "\n"


def digest(platform: Platform, text: str) -> str:
    return hashlib.sha256(normalize(platform, text).encode()).hexdigest()


def differences(platform: Platform, baseline: str, current: str, limit: int = 6) -> list[str]:
    """A few lines that differ (for the refusal message), '+' added since, '-' removed."""
    old = normalize(platform, baseline).splitlines()
    new = normalize(platform, current).splitlines()
    added = [f"+ {ln.strip()}" for ln in new if ln not in old]
    removed = [f"- {ln.strip()}" for ln in old if ln not in new]
    return (added + removed)[:limit]
