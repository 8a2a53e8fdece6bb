"""An infected host's scanner: `python -m agent.lab.scanner --netns NS [--rate N] ADDR:PORT ...`.

Imports the standard library, agent.errors, agent.lab.netns and agent.lab.child only; never
netmiko/pysnmp/paramiko.

Run inside a twin host's network namespace (`agent.lab.infect` starts it there), it tries
non-blocking TCP connects to its targets in turn, forever, `rate` attempts per second, each given
up after `timeout` seconds (a connection that succeeds is reset at once). Every target must lie in
198.18.0.0/15, and the process refuses to run anywhere but in the twin namespace it is told
(never the machine's root network namespace): a SafetyError before any socket exists. It
prints one line of counts per minute to stderr, nothing else (it knows no secret). SIGTERM,
SIGINT and SIGHUP stop it; its ready file (its PID, written once it is scanning) is removed on
the way out.
"""

from __future__ import annotations

import argparse
import errno
import os
import selectors
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import CordonError, LabError, SafetyError
from agent.lab import child, netns

DEFAULT_RATE = 20.0
DEFAULT_TIMEOUT = 0.2
MAX_RATE = 1000.0
REPORT_EVERY = 60.0
_STOP = object()  # selector data of the stop socket


@dataclass(frozen=True)
class Target:
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def parse_target(text: str) -> Target:
    """`ADDR:PORT` -> Target; SafetyError if ADDR is outside the twin range 198.18.0.0/15."""
    address, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise LabError(f"scanner target {text!r} is not ADDR:PORT")
    ip = netns.check_twin_address(address, "scanner target")
    number = int(port)
    if not 0 < number < 65536:
        raise LabError(f"scanner target {text!r}: port out of range 1-65535")
    return Target(str(ip), number)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def check_namespace(name: str) -> None:
    """SafetyError unless this process runs in twin namespace `name` and not in the machine's
    root network namespace: init's (when readable: a protected PID 1 hides it) or that of the
    process that started the scanner (the agent, which lives in the root namespace)."""
    netns.check_name(name)
    own = _ns_inode("/proc/self/ns/net")
    starters = ("/proc/1/ns/net", f"/proc/{os.getppid()}/ns/net")
    forbidden = {i for i in map(_ns_inode, starters) if i is not None}
    if own is None or not forbidden:
        raise SafetyError("cannot tell whether the scanner runs in the root network namespace")
    if own in forbidden:
        raise SafetyError(
            "the scanner runs in the machine's root network namespace (or its starter's); it "
            "only runs inside a twin host's namespace",
            hint="start it with `cordon lab infect SITE/ZONE/HOST`",
        )
    if _ns_inode(str(netns.netns_path(name))) != own:
        raise SafetyError(f"the scanner does not run in twin namespace {name}")


class Scanner:
    """The connect loop: one selector, at most rate x timeout attempts in flight."""

    def __init__(self, targets: Sequence[Target], rate: float, timeout: float) -> None:
        if not targets:
            raise LabError("the scanner needs at least one target")
        if not 0 < rate <= MAX_RATE:
            raise LabError(f"scanner rate must be in (0, {MAX_RATE:g}] attempts/s, got {rate}")
        if not 0 < timeout <= 10:
            raise LabError(f"scanner timeout must be in (0, 10] s, got {timeout}")
        self.targets = list(targets)
        self.rate = rate
        self.timeout = timeout
        self.counts: Counter[str] = Counter()
        self._sel = selectors.DefaultSelector()
        self._pending: deque[tuple[float, socket.socket]] = deque()
        self._next = 0

    def attempt(self) -> None:
        """One non-blocking connect to the next target."""
        target = self.targets[self._next % len(self.targets)]
        self._next += 1
        self.counts["attempts"] += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # out of descriptors or buffers: count it, try again at the next tick
            self.counts["unreachable"] += 1
            return
        sock.setblocking(False)
        # close() of a connected socket resets it: no TIME_WAIT pile-up at high rates
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            err = sock.connect_ex((target.address, target.port))
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err == errno.EINPROGRESS:
            self._sel.register(sock, selectors.EVENT_WRITE)
            self._pending.append((time.monotonic() + self.timeout, sock))
            return
        self._done(sock, err)

    def _done(self, sock: socket.socket, err: int) -> None:
        if err == 0:
            self.counts["connected"] += 1
        elif err == errno.ECONNREFUSED:
            self.counts["refused"] += 1
        elif err == errno.ETIMEDOUT:
            self.counts["timeout"] += 1
        else:
            self.counts["unreachable"] += 1
        sock.close()

    def poll(self, until: float) -> bool:
        """Settle answered attempts and expire old ones until `until` (monotonic); True as soon
        as a registered stop socket becomes readable."""
        while True:
            now = time.monotonic()
            while self._pending and self._pending[0][0] <= now:
                _, sock = self._pending.popleft()
                if sock.fileno() != -1:
                    self._sel.unregister(sock)
                    self._done(sock, errno.ETIMEDOUT)
            left = until - now
            if left <= 0:
                return False
            wait = min(left, self._pending[0][0] - now) if self._pending else left
            for key, _ in self._sel.select(max(wait, 0.0)):
                if key.data is _STOP:
                    return True
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                self._sel.unregister(conn)
                self._done(conn, conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def close(self) -> None:
        for _, sock in self._pending:
            if sock.fileno() != -1:
                self._sel.unregister(sock)
                sock.close()
        self._pending.clear()
        self._sel.close()

    def report(self) -> str:
        c = self.counts
        return (
            f"scanner: {c['attempts']} attempts to {len(self.targets)} targets: "
            f"{c['connected']} connected, {c['refused']} refused, {c['timeout']} timed out, "
            f"{c['unreachable']} unreachable"
        )

    def run(self, stop: socket.socket) -> None:
        """Scan until `stop` becomes readable (the signal wakeup socket)."""
        self._sel.register(stop, selectors.EVENT_READ, _STOP)
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        report_at = next_at + REPORT_EVERY
        try:
            while True:
                now = time.monotonic()
                if now >= next_at:
                    self.attempt()
                    next_at += interval
                    if next_at < now - 1.0:  # fell behind (a busy machine): do not burst
                        next_at = now
                    continue
                if now >= report_at:
                    print(self.report(), file=sys.stderr, flush=True)
                    report_at = now + REPORT_EVERY
                if self.poll(min(next_at, report_at)):
                    return
        finally:
            self._sel.unregister(stop)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agent.lab.scanner",
        description="Scan twin targets with TCP connects (inside a twin host's namespace only).",
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="attempts per second")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="per attempt, s")
    parser.add_argument("--netns", required=True, help="the twin namespace it must run in")
    parser.add_argument("--ready-file", help="written with the PID once scanning")
    parser.add_argument("targets", nargs="+", metavar="ADDR:PORT")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    try:
        targets = [parse_target(t) for t in args.targets]  # SafetyError before anything else
        check_namespace(args.netns)
        scanner = Scanner(targets, args.rate, args.timeout)
    except CordonError as exc:
        return child.fail("scanner", exc)
    ready = Path(args.ready_file) if args.ready_file else None
    with child.until_signalled(ready) as wake:
        print(
            f"scanner: {len(targets)} targets, {args.rate:g} attempts/s, "
            f"timeout {args.timeout:g} s",
            file=sys.stderr,
            flush=True,
        )
        try:
            scanner.run(wake)
        finally:
            scanner.close()
            print(scanner.report(), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
