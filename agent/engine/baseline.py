"""A device's configuration compared with its recorded baseline, apart from what isolation itself
changes (Cordon's own rules, interfaces shut) and what changes by itself (counters, the config's
size line): which lines those are is the platform's (`Spec.config_lines`, through the registry).
Reconnection requires the match: a device an attacker reconfigured is not reconnected. Pure;
imports the platform registry only."""

from __future__ import annotations

import hashlib

from agent.platforms import registry


def normalize(platform: str, text: str) -> str:
    """The configuration minus isolation and volatile parts, one line per line, stripped."""
    own = registry.platform(platform).config_lines
    lines = own(text) if own is not None else text.splitlines()
    return "\n".join(ln.rstrip() for ln in lines if ln.strip()) + "\n"


def digest(platform: str, text: str) -> str:
    return hashlib.sha256(normalize(platform, text).encode()).hexdigest()


def differences(platform: str, baseline: str, current: str, limit: int = 6) -> list[str]:
    """A few lines that differ (for the refusal message), '+' added since, '-' removed."""
    old = normalize(platform, baseline).splitlines()
    new = normalize(platform, current).splitlines()
    added = [f"+ {ln.strip()}" for ln in new if ln not in old]
    removed = [f"- {ln.strip()}" for ln in old if ln not in new]
    return (added + removed)[:limit]
