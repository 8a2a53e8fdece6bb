"""Times a person types for `--since` and `--at`: `1h`, `30m`, `2d`, `45s`, `1w` (that long ago),
`now`, `today` / `yesterday` (UTC midnight), or an ISO-8601 date or time (without a zone: UTC).

Deliberately small and strict: a fuzzy natural-language parser (dateparser and the like) would
read "last tuesdy" as *something*, and a report selected on a guessed time is a wrong report.
Anything else is refused with the forms it accepts. Imports the standard library and
`agent.errors` only; pure (the current time is a parameter).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from agent.errors import ConfigError

__all__ = ["ACCEPTED", "parse_moment"]

ACCEPTED = (
    "a duration ago (45s, 30m, 1h, 2d, 1w; also 1h30m), now, today, yesterday, "
    "or an ISO-8601 date or time (2024-10-15, 2024-10-15T03:00, 2024-10-15T03:00+02:00)"
)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d{1,6}[smhdw])+")
_PART = re.compile(r"(\d{1,6})([smhdw])")
_MAX_AGO = timedelta(days=3660)


def parse_moment(text: str, *, now: datetime, what: str = "--since") -> datetime:
    """The moment `text` names, relative to `now` (timezone-aware); `ConfigError` (exit 2)
    naming `what` and the accepted forms when it names none."""
    value = text.strip().lower()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "now":
        return now
    if value == "today":
        return midnight
    if value == "yesterday":
        return midnight - timedelta(days=1)
    if _DURATION.fullmatch(value):
        ago = timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in _PART.findall(value)))
        if ago > _MAX_AGO:
            raise ConfigError(f"{what} {text!r}: more than ten years ago", hint=f"use {ACCEPTED}")
        return now - ago
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a time Cordon reads", hint=f"use {ACCEPTED}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
