"""The twin's clinical traffic: every must-survive flow streams, as ICU monitors do to their
central station. One process (`python -m agent.lab.streams SPEC.json`) keeps, for each stream, a
TCP connection from the flow's source host namespace to its destination service (the zone
services keep a connection open after its banner, see `agent.lab.services`), sends a small
message every `interval_s` (200 ms), and reconnects one second after the connection drops. A
connection whose messages go unacknowledged for `USER_TIMEOUT_MS` is dropped (TCP_USER_TIMEOUT),
so a cut is noticed and the stream reconnects once the flow is open again.

Every `STATUS_S` it writes what each stream did (messages sent, connects, drops, connected now)
to its status file (atomically), for tests and the operator. Started with the twin's services
by `lab up` and stopped by PID at `lab down` (journaled like the other daemons).

Imports the standard library, agent.errors and the lab's netns, child and daemons (the spec is
built from the lab's flow targets, imported where it is built: the process does not load them);
never a driver.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import CordonError, LabError
from agent.lab import child, daemons, netns

if TYPE_CHECKING:
    from agent.inventory.models import Inventory
    from agent.lab.topology import Blueprint

INTERVAL_S = 0.2
RECONNECT_S = 1.0
USER_TIMEOUT_MS = 2000
STATUS_S = 1.0
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


@dataclass(frozen=True)
class Stream:
    """Flow `flow`: from namespace `netns` to `dst:port`, a message every `interval_s`."""

    flow: str
    netns: str
    dst: str
    port: int
    interval_s: float = INTERVAL_S

    def __str__(self) -> str:
        return f"{self.flow} ({self.netns} -> {self.dst}:{self.port})"


@dataclass(frozen=True)
class StreamSpec:
    streams: tuple[Stream, ...]
    ready_file: str
    status_file: str


def validate(spec: StreamSpec) -> None:
    """Raise SafetyError/LabError for a stream that must not be opened (nothing is opened)."""
    names: set[str] = set()
    for s in spec.streams:
        netns.check_name(s.netns)
        netns.check_twin_address(s.dst, f"stream destination of {s}")
        if not 0 < s.port < 65536:
            raise LabError(f"stream {s}: port {s.port} out of range 1-65535")
        if not 0.05 <= s.interval_s <= 60:
            raise LabError(f"stream {s}: interval {s.interval_s} s out of range 0.05-60")
        if s.flow in names or not s.flow or any(c.isspace() for c in s.flow):
            raise LabError(f"stream {s}: flow name empty, with spaces, or given twice")
        names.add(s.flow)


def dump_spec(spec: StreamSpec, path: Path) -> None:
    validate(spec)
    path.write_text(json.dumps(asdict(spec), indent=1), encoding="utf-8")


def load_spec(path: Path) -> StreamSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        spec = StreamSpec(
            streams=tuple(Stream(**s) for s in data["streams"]),
            ready_file=str(data["ready_file"]),
            status_file=str(data["status_file"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"stream spec {path}: {exc}") from None
    validate(spec)
    return spec


@dataclass
class _State:
    stream: Stream
    sock: socket.socket | None = None
    connected: bool = False
    due: float = 0.0  # next connect attempt, or next message
    seq: int = 0
    sent: int = 0
    connects: int = 0
    drops: int = 0
    last_error: str = ""

    def status(self) -> dict[str, object]:
        return {
            "flow": self.stream.flow,
            "connected": self.connected,
            "sent": self.sent,
            "connects": self.connects,
            "drops": self.drops,
            "last_error": self.last_error,
        }


class Streamer:
    """The event loop of every stream: one selector, timers by polling `due`."""

    def __init__(self, spec: StreamSpec) -> None:
        validate(spec)
        self.spec = spec
        self.sel = selectors.DefaultSelector()
        self.states = [_State(s) for s in spec.streams]

    def _connect(self, st: _State, now: float) -> None:
        s = st.stream
        with netns.inside(s.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect_ex((s.dst, s.port))
        st.sock, st.connected, st.due = sock, False, now + RECONNECT_S + USER_TIMEOUT_MS / 1000
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, st)

    def _drop(self, st: _State, now: float, why: str) -> None:
        if st.sock is not None:
            self.sel.unregister(st.sock)
            st.sock.close()
        if st.connected:
            st.drops += 1
        st.sock, st.connected, st.due, st.last_error = None, False, now + RECONNECT_S, why

    def _event(self, st: _State, mask: int, now: float) -> None:
        assert st.sock is not None
        if not st.connected:
            err = st.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(st, now, f"connect: errno {err}")
                return
            st.connected, st.due = True, now
            st.connects += 1
            self.sel.modify(st.sock, selectors.EVENT_READ, st)
            return
        if mask & selectors.EVENT_READ:
            try:
                data = st.sock.recv(4096)  # the banner; nothing else comes
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._drop(st, now, f"recv: {exc.strerror}")
                return
            if not data:
                self._drop(st, now, "closed by the service")

    def _tick(self, now: float) -> None:
        for st in self.states:
            if now < st.due:
                continue
            if st.sock is None:
                try:
                    self._connect(st, now)
                except OSError as exc:
                    self._drop(st, now, f"socket: {exc.strerror}")
            elif not st.connected:
                self._drop(st, now, "connect timed out")
            else:
                st.seq += 1
                msg = f"HL7 {st.stream.flow} {st.seq}\n".encode()
                try:
                    st.sock.send(msg)
                    st.sent += 1
                    st.due = max(st.due + st.stream.interval_s, now)
                except (BlockingIOError, InterruptedError):
                    st.due = now + st.stream.interval_s  # buffer full: skip one
                except OSError as exc:
                    self._drop(st, now, f"send: {exc.strerror}")

    def write_status(self) -> None:
        path = Path(self.spec.status_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps([st.status() for st in self.states]), encoding="utf-8")
        tmp.replace(path)

    def run(self, wakeup: socket.socket) -> None:
        self.sel.register(wakeup, selectors.EVENT_READ, None)
        next_status = 0.0
        try:
            while True:
                now = time.monotonic()
                self._tick(now)
                if now >= next_status:
                    self.write_status()
                    next_status = now + STATUS_S
                due = min((st.due for st in self.states), default=now + STATUS_S)
                timeout = min(max(due - time.monotonic(), 0.0), STATUS_S)
                for key, mask in self.sel.select(timeout):
                    if key.data is None:
                        return
                    self._event(key.data, mask, time.monotonic())
        finally:
            for st in self.states:
                if st.sock is not None:
                    st.sock.close()
            self.sel.close()


def read_status(path: Path) -> dict[str, dict[str, object]]:
    """flow -> what its stream did, from the status file ({} when absent)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(r["flow"]): r for r in rows}


def spec_for(inv: Inventory, bp: Blueprint, state_dir: Path) -> StreamSpec:
    """A stream for every must-survive flow of `inv`, from its source host's namespace to its
    destination service, as the twin `bp` built them."""
    from agent.lab.flows import targets  # noqa: PLC0415 - not loaded by the stream process

    must = [f for f in inv.flows if f.must_survive]
    return StreamSpec(
        streams=tuple(Stream(f.name, t.netns, t.dst, t.port) for f, t in targets(inv, bp, must)),
        ready_file=str(state_dir / "streams.ready"),
        status_file=str(state_dir / "streams.json"),
    )


def start(spec_path: Path, state_dir: Path, *, timeout: float = 15.0) -> daemons.DaemonProc:
    """Start `python -m agent.lab.streams SPEC` (a root-namespace process whose sockets live in
    the source hosts' namespaces); its record once it wrote its ready file."""
    spec = load_spec(spec_path)
    ready = Path(spec.ready_file)
    ready.unlink(missing_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    project = Path(__file__).resolve().parents[2]
    env = {**daemons._BASE_ENV, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"}
    return daemons._launch(
        "streams",
        None,
        "streams",
        [sys.executable, "-m", "agent.lab.streams", str(spec_path)],
        env=env,
        out_path=state_dir / "streams.out",
        pidfile=ready,
        logfile=state_dir / "streams.out",
        ready=lambda pid: daemons._pidfile_is(ready, pid),
        cleanup=[ready, Path(spec.status_file)],
        timeout=timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agent.lab.streams SPEC.json", file=sys.stderr)
        return 2
    try:
        streamer = Streamer(load_spec(Path(args[0])))
    except CordonError as exc:
        return child.fail("streams", exc)
    with child.until_signalled(Path(streamer.spec.ready_file)) as wake:
        print(f"READY {len(streamer.states)}", flush=True)
        streamer.run(wake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
