"""What machine a benchmark ran on: printed at the top of every benchmark's output."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores{mem}; Linux {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of process `pid` in KiB, from /proc."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss
