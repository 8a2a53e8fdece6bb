"""Durations and times as a person reads them (the log keeps the exact values).

Pure; imports the standard library only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["duration", "moment", "span"]


def duration(seconds: float | None) -> str:  # noqa: PLR0911 - one return per unit
    """0.3 s, 4.5 s, 45 s, 12 min 05 s, 3 h 07 min, 2 d 04 h; "unknown" for None.

    Below ten seconds one decimal (a device step's time); above, whole units a person counts."""
    if seconds is None:
        return "unknown"
    value = abs(float(seconds))
    sign = "-" if seconds < 0 else ""
    if value < 0.05:
        return f"{sign}< 0.1 s"
    if value < 10:
        return f"{sign}{value:.1f} s"
    total = round(value)
    if total < 60:
        return f"{sign}{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{sign}{minutes} min {secs:02d} s"
    hours, mins = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours} h {mins:02d} min"
    days, hrs = divmod(hours, 24)
    return f"{sign}{days} d {hrs:02d} h"


def span(delta: timedelta | None) -> str:
    return "unknown" if delta is None else duration(delta.total_seconds())


def moment(when: datetime | None) -> str:
    """2024-10-15 03:12:07 UTC (seconds; the log keeps microseconds); "unknown" for None."""
    if when is None:
        return "unknown"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
