"""Owns the process's open-file budget: the RLIMIT_NOFILE soft limit raised to the hard limit,
and the refusal of a pool whose warm sessions could not all be open at once.
Must not import netmiko, paramiko, pysnmp, the engine, the daemon or the CLI.

A warm SSH session holds 3 descriptors (its TCP socket and the pipe pair paramiko makes so the
channel can be waited on); an SNMP driver at most 1 (a UDP socket, shared between devices with the
same credentials); a FortiGate session up to 4, one socket per pinned HTTPS connection (its own
and the extra ones its flow decisions' policy lookups overlap over: the fortigate driver's
`LOOKUP_CONNECTIONS`), counted as max(SSH_SESSION, that). The default soft limit (1,024 on
most systems) is reached by ~300 warm sessions; past it, `socket()` fails with EMFILE in the
middle of a run.
"""

from __future__ import annotations

import logging
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import ConfigError
from agent.inventory.models import Inventory

SSH_SESSION = 3  # TCP socket + paramiko's channel pipe (read end, write end)
SNMP_SESSION = 1  # a UDP socket (an upper bound: engines are shared)
# a FortiGate session's HTTPS sockets: agent.platforms.fortigate.driver.LOOKUP_CONNECTIONS (not
# imported: drivers sit below platforms; a test holds the two equal)
FORTIGATE_SESSION = max(SSH_SESSION, 4)
RESERVE = 256  # journal, audit log, API sockets, epoll, flow probes, libraries

_log = logging.getLogger("cordon.limits")
_lock = threading.Lock()
_reported = False


@dataclass(frozen=True)
class Nofile:
    """The RLIMIT_NOFILE soft limit before and after raising, and the hard limit."""

    before: int
    soft: int
    hard: int

    def describe(self) -> str:
        if self.soft == self.before:
            return f"open files: soft limit {_n(self.soft)} (hard limit {_n(self.hard)})"
        return f"open files: soft limit raised from {_n(self.before)} to {_n(self.soft)}"


def _n(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value:,}"


def raise_nofile(say: Callable[[str], None] | None = None) -> Nofile:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (idempotent). The first call
    reports the figures once, through `say` if given, else the `cordon.limits` logger."""
    global _reported  # noqa: PLW0603 - one report per process
    with _lock:
        before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = before
        if before != hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (ValueError, OSError):  # e.g. a hard limit above the kernel's nr_open
                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        got = Nofile(before, soft, hard)
        if not _reported:
            _reported = True
            (say or _log.info)(got.describe())
        return got


def descriptors_needed(inv: Inventory, max_size: int) -> int:
    """Descriptors a pool of at most `max_size` warm sessions on `inv` may hold, plus the
    process's reserve (the costliest mix: every FortiGate session first, then every other)."""
    devices = [d for _site, d in inv.devices()]
    forti = min(max_size, sum(1 for d in devices if d.platform == "fortigate"))
    ssh = min(max_size, len(devices)) - forti
    snmp = min(max_size - forti - ssh, sum(1 for d in devices if d.snmp is not None))
    return RESERVE + FORTIGATE_SESSION * forti + SSH_SESSION * ssh + SNMP_SESSION * snmp


def ensure_for_pool(inv: Inventory, max_size: int) -> Nofile:
    """Raise the soft limit, then refuse (ConfigError, nothing sent) if a pool of `max_size` warm
    sessions on `inv` could need more descriptors than this process may open."""
    got = raise_nofile()
    need = descriptors_needed(inv, max_size)
    if got.soft != resource.RLIM_INFINITY and need > got.soft:
        n = len(list(inv.devices()))
        raise ConfigError(
            f"{inv.path}: {n:,} devices with up to {max_size:,} warm sessions need about "
            f"{need:,} open files; this process may open {got.soft:,} "
            f"(RLIMIT_NOFILE, hard limit {_n(got.hard)}); nothing was sent",
            hint="raise the hard limit of open files (`ulimit -Hn`, LimitNOFILE= in the "
            "service unit, /etc/security/limits.conf), then start again",
        )
    return got
