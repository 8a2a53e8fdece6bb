"""One process serving every twin host's TCP services: `python -m agent.lab.services SPEC.json`.

Imports the standard library, agent.errors, agent.lab.netns and agent.lab.child only; never
netmiko/pysnmp/paramiko.

Each listener is created inside its namespace (setns) and bound to its twin address (never a
wildcard or loopback). On accept the server sends one banner line; the connection then stays
open, what the client sends read and discarded, until the client closes it (a probe closes after
the banner; a clinical stream, `agent.lab.streams`, keeps talking), at most `MAX_KEPT` at once
(the oldest closed beyond). When every socket
is bound it prints `READY <n>` and writes the ready file (its PID); SIGTERM/SIGINT stop it
cleanly and remove the ready file.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.errors import CordonError, LabError
from agent.lab import child, netns


@dataclass(frozen=True)
class Listener:
    """A TCP service of one twin host: bound to `address:port` inside namespace `netns`."""

    netns: str
    address: str
    port: int
    banner: str

    def __str__(self) -> str:
        return f"{self.netns}/{self.address}:{self.port}"


@dataclass(frozen=True)
class ServiceSpec:
    listeners: tuple[Listener, ...]
    ready_file: str | None = None


def banner_for(host: str, port: int) -> str:
    """The conventional banner line of a twin service (without the newline)."""
    return f"CORDON {host} {port}"


def validate(spec: ServiceSpec) -> None:
    """Raise SafetyError/LabError for a listener that must not be created (nothing is opened)."""
    seen: set[tuple[str, str, int]] = set()
    for lst in spec.listeners:
        netns.check_name(lst.netns)
        netns.check_twin_address(lst.address, f"service address of {lst}")
        if not 0 < lst.port < 65536:
            raise LabError(f"service {lst}: port {lst.port} out of range 1-65535")
        if "\n" in lst.banner or "\r" in lst.banner:
            raise LabError(f"service {lst}: banner must be one line")
        key = (lst.netns, lst.address, lst.port)
        if key in seen:
            raise LabError(f"service {lst} is listed twice")
        seen.add(key)


def dump_spec(spec: ServiceSpec, path: Path) -> None:
    """Write `spec` as JSON to `path` (validated first)."""
    validate(spec)
    data = {"listeners": [asdict(x) for x in spec.listeners], "ready_file": spec.ready_file}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_spec(path: Path) -> ServiceSpec:
    """Read and validate a spec written by dump_spec (or by hand)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        listeners = tuple(
            Listener(str(x["netns"]), str(x["address"]), int(x["port"]), str(x["banner"]))
            for x in raw["listeners"]
        )
        ready = raw.get("ready_file")
        spec = ServiceSpec(listeners, None if ready is None else str(ready))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"service spec {path} is invalid: {exc!r}") from exc
    validate(spec)
    return spec


def bind_all(spec: ServiceSpec) -> list[tuple[socket.socket, bytes]]:
    """Create, bind and listen every socket in its namespace; returns (socket, banner line)."""
    validate(spec)
    by_ns: dict[str, list[Listener]] = defaultdict(list)
    for lst in spec.listeners:
        by_ns[lst.netns].append(lst)
    bound: list[tuple[socket.socket, bytes]] = []
    try:
        for ns, listeners in by_ns.items():
            with netns.inside(ns):
                made = [(socket.socket(socket.AF_INET, socket.SOCK_STREAM), x) for x in listeners]
            for s, lst in made:
                bound.append((s, (lst.banner + "\n").encode()))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((lst.address, lst.port))
                except OSError as exc:
                    raise LabError(
                        f"service {lst}: cannot bind: {exc.strerror}",
                        hint="is the address configured in that namespace, the port free?",
                    ) from exc
                s.listen(128)
                s.setblocking(False)
    except BaseException:
        for s, _ in bound:
            s.close()
        raise
    return bound


MAX_KEPT = 1024  # connections kept open after their banner (the oldest closed beyond)
_KEPT = "kept"  # selector data of a kept connection


def serve(bound: Sequence[tuple[socket.socket, bytes]], wakeup: socket.socket) -> None:
    """Answer every connection with its banner until `wakeup` becomes readable."""
    sel = selectors.DefaultSelector()
    kept: dict[socket.socket, None] = {}  # insertion order: oldest first
    try:
        for s, banner in bound:
            sel.register(s, selectors.EVENT_READ, banner)
        sel.register(wakeup, selectors.EVENT_READ, None)
        while True:
            for key, _ in sel.select():
                if key.data is None:
                    return
                assert isinstance(key.fileobj, socket.socket)
                if key.data == _KEPT:
                    _discard(sel, kept, key.fileobj)
                else:
                    _answer(sel, kept, key.fileobj, key.data)
    finally:
        for conn in kept:
            conn.close()
        sel.close()


def _answer(
    sel: selectors.BaseSelector,
    kept: dict[socket.socket, None],
    listener: socket.socket,
    banner: bytes,
) -> None:
    for _ in range(64):  # drain the accept queue, bounded so one busy port cannot starve others
        try:
            conn, _peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        try:
            conn.setblocking(False)
            conn.send(banner)
        except OSError:
            conn.close()
            continue
        while len(kept) >= MAX_KEPT:
            _close(sel, kept, next(iter(kept)))
        kept[conn] = None
        sel.register(conn, selectors.EVENT_READ, _KEPT)


def _discard(
    sel: selectors.BaseSelector, kept: dict[socket.socket, None], conn: socket.socket
) -> None:
    """Read what a kept connection sent; close it when the client closed (or reset) it."""
    try:
        data = conn.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        _close(sel, kept, conn)


def _close(
    sel: selectors.BaseSelector, kept: dict[socket.socket, None], conn: socket.socket
) -> None:
    kept.pop(conn, None)
    sel.unregister(conn)
    conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.lab.services SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = load_spec(Path(args[0]))
        bound = bind_all(spec)
    except CordonError as exc:
        return child.fail("services", exc)
    ready = Path(spec.ready_file) if spec.ready_file else None
    try:
        with child.until_signalled(ready) as wake:
            print(f"READY {len(bound)}", flush=True)
            serve(bound, wake)
    finally:
        for s, _ in bound:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
