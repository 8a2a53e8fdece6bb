"""Seals: on demand, at close and periodically, deduplicated, copied to syslog (RFC 5424)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.audit.chain import ChainWriter
from agent.audit.seals import SEALS_NAME, Sealer, SyslogTarget, format_rfc5424, read_seals
from agent.errors import AuditError
from tests.audit.conftest import write_log

RFC5424 = re.compile(
    r"^<133>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 \S+ cordon \d+ seal "
    r"\[seal@32473 file=\"audit-2024-10-15\.jsonl\" seq=\"3\" hash=\"[0-9a-f]{64}\" "
    r"count=\"3\"(?: key=\"[0-9a-f]{16}\" sig=\"[A-Za-z0-9+/]+=*\")?\] "
    r"audit chain head seq=3$"
)


def _seals(log_dir: Path) -> list[dict[str, object]]:
    loaded = read_seals(log_dir)
    assert loaded is not None
    return loaded[0]


def test_seal_records_the_head(log_dir: Path) -> None:
    """A seal names the file, seq and hash of the last record."""
    writer = write_log(log_dir, 3, seal=False)
    seal = Sealer(writer, interval=0).seal()
    assert seal is not None
    last = json.loads((log_dir / "audit-2024-10-15.jsonl").read_text().splitlines()[-1])
    assert (seal["file"], seal["seq"], seal["hash"]) == ("audit-2024-10-15.jsonl", 3, last["hash"])
    assert _seals(log_dir)[0]["hash"] == last["hash"]


def test_unchanged_head_is_not_sealed_twice(log_dir: Path) -> None:
    """Sealing again without new records writes nothing."""
    writer = write_log(log_dir, 3, seal=False)
    sealer = Sealer(writer, interval=0)
    assert sealer.seal() is not None
    assert sealer.seal() is None
    assert len(_seals(log_dir)) == 1


def test_empty_log_is_not_sealed(log_dir: Path) -> None:
    """There is nothing to seal before the first record."""
    assert Sealer(ChainWriter(log_dir), interval=0).seal() is None
    assert not (log_dir / SEALS_NAME).exists()


def test_seal_every_n_records(log_dir: Path) -> None:
    """With every=5, ten appends leave seals at seq 1 (the first record, at once), 5 and 10."""
    writer = ChainWriter(log_dir)
    sealer = Sealer(writer, interval=0, every=5)
    for _ in range(10):
        writer.append({"event": "x"})
        sealer.note_append()
    assert [s["seq"] for s in _seals(log_dir)] == [1, 5, 10]


def test_periodic_seal_covers_an_idle_tail(log_dir: Path) -> None:
    """The timer seals records appended since the last seal without any further event."""
    writer = ChainWriter(log_dir)
    sealer = Sealer(writer, interval=0.05)
    for _ in range(2):
        writer.append({"event": "x"})
        sealer.note_append()
    deadline = time.monotonic() + 5
    while len(_seals(log_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    sealer.close()
    assert [(s["seq"], s["reason"]) for s in _seals(log_dir)] == [(1, "first"), (2, "periodic")]


def test_rfc5424_message_carries_the_seal(log_dir: Path) -> None:
    """The syslog message has PRI, version, UTC time, app, msgid and the seal as structured data."""
    writer = write_log(log_dir, 3, seal=False)
    seal = Sealer(writer, interval=0).seal()
    assert seal is not None
    message = format_rfc5424(seal, hostname="cordon host", procid=42).decode()
    assert RFC5424.match(message), message
    assert " cordonhost cordon 42 seal " in message


def test_seal_is_sent_over_udp(log_dir: Path) -> None:
    """A UDP syslog target on 127.0.0.1 receives the seal."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        writer = write_log(log_dir, 3, seal=False)
        Sealer(writer, syslog=SyslogTarget.parse(f"udp://127.0.0.1:{port}"), interval=0).seal()
        data, _ = server.recvfrom(65536)
    assert RFC5424.match(data.decode()), data


def test_seal_is_sent_over_tcp_with_octet_counting(log_dir: Path) -> None:
    """A TCP syslog target receives `<length> <message>` framing (RFC 6587)."""
    received: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(5)
        port = server.getsockname()[1]

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(65536):
                    received.append(chunk)

        thread = threading.Thread(target=accept)
        thread.start()
        writer = write_log(log_dir, 3, seal=False)
        Sealer(writer, syslog=SyslogTarget.parse(f"tcp://127.0.0.1:{port}"), interval=0).seal()
        thread.join(5)
    length, _, message = b"".join(received).partition(b" ")
    assert int(length) == len(message)
    assert RFC5424.match(message.decode()), message


def test_unreachable_syslog_is_reported_not_fatal(log_dir: Path) -> None:
    """A refused TCP syslog goes to on_error; the local seal is still written."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed as soon as the block ends: nobody listens there
    errors: list[AuditError] = []
    writer = write_log(log_dir, 3, seal=False)
    target = SyslogTarget.parse(f"tcp://127.0.0.1:{port}")
    Sealer(writer, syslog=target, interval=0, on_error=errors.append).seal()
    assert len(errors) == 1
    assert f"127.0.0.1:{port}" in errors[0].message
    assert _seals(log_dir)[0]["seq"] == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:514", SyslogTarget("udp", "127.0.0.1", 514)),
        ("tcp://127.0.0.1:6514", SyslogTarget("tcp", "127.0.0.1", 6514)),
        ("udp://[::1]:514", SyslogTarget("udp", "::1", 514)),
    ],
)
def test_syslog_target_parses(spec: str, expected: SyslogTarget) -> None:
    """host:port, udp:// and tcp:// targets parse, IPv6 in brackets included."""
    assert SyslogTarget.parse(spec) == expected


@pytest.mark.parametrize("spec", ["127.0.0.1", "tls://h:1", "h:0", "h:http"])
def test_bad_syslog_target_is_refused(spec: str) -> None:
    """A target without a valid port or with an unknown transport raises AuditError."""
    with pytest.raises(AuditError):
        SyslogTarget.parse(spec)
