"""The daemon's side of the probe channel: one order to one probe point over mutual TLS, the
probe's certificate checked against its pin before a byte of the order is sent. Every failure is
a ProbeError naming the probe, its address and the cause (unreachable, timed out, not the pinned
certificate, refused our certificate, refused the order). Imports the probe's own modules and
`agent.errors`."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.errors import ProbeError
from agent.probe import channel, protocol
from agent.probe.protocol import Order, OrderError


@dataclass(frozen=True)
class ProbeAddress:
    id: str
    address: str
    port: int
    pin: str | None  # 'sha256:<hex>'; None: never contacted (no pin, no trust)


Connect = Callable[[tuple[str, int], float], socket.socket]


def ask(
    target: ProbeAddress,
    order: Order,
    ctx: ssl.SSLContext,
    *,
    timeout: float,
    connect: Connect = socket.create_connection,
) -> dict[str, Any]:
    """The probe's answer to `order` (a dict with ok=True), or ProbeError."""
    where = f"probe {target.id} at {target.address}:{target.port}"
    if target.pin is None:
        raise ProbeError(
            f"{where} has no pinned certificate; it is never contacted without one",
            hint="set control.certificate, or the probe id's line in the group tls_pins file",
        )
    try:
        raw = connect((target.address, target.port), timeout)
    except TimeoutError:
        raise ProbeError(f"{where}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError(f"{where} is unreachable: {exc.strerror or exc}") from None
    try:
        with ctx.wrap_socket(raw) as tls:
            seen = channel.peer_pin(tls)
            if seen != target.pin:
                raise ProbeError(
                    f"{where} showed certificate {seen or 'none'}, not the pinned "
                    f"{target.pin}: not talking to it",
                    hint="if the probe was re-keyed on purpose, update its pin in the inventory",
                )
            tls.sendall(protocol.encode(protocol.order_json(order)))
            line = _read_line(tls)
    except ssl.SSLError as exc:
        raise ProbeError(f"{where}: TLS failed ({exc.reason or exc})") from None
    except TimeoutError:
        raise ProbeError(f"{where}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError(f"{where}: connection failed: {exc.strerror or exc}") from None
    if not line:
        raise ProbeError(
            f"{where} closed the channel without answering (did it refuse our certificate? "
            "its log says)"
        )
    try:
        answer = protocol.decode(line)
    except OrderError as exc:
        raise ProbeError(f"{where} answered garbage: {exc}") from None
    if answer.get("probe") != target.id:
        raise ProbeError(f"{where} answered as probe {answer.get('probe')!r}")
    if not answer.get("ok"):
        raise ProbeError(f"{where}: {str(answer.get('error'))[:300]}")
    return answer


def _read_line(tls: ssl.SSLSocket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > protocol.MAX_LINE:
            raise OSError(f"answer longer than {protocol.MAX_LINE} bytes")
    return buf.split(b"\n", 1)[0]
