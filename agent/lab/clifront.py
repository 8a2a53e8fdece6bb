"""The twin's IOS-style CLI front for a switch whose inventory names Linux cannot take (`Gi1/0/1`):
sshd's ForceCommand runs this in front of vtysh; it rewrites the inventory's names into the
kernel's in what the client types, and back in everything vtysh prints, so the driver sees the
names a real switch would show. Only the twin uses it; the drivers are unchanged.

Standard library only (it runs as a script, `python -I clifront.py MAP -- VTYSH ARGV...`, with
MAP a JSON object {inventory name: kernel name}). Owns nothing else.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sys
import termios
import tty
from collections.abc import Mapping

_NAME = r"[A-Za-z0-9_./:-]"


def translator(mapping: Mapping[str, str]) -> tuple[re.Pattern[str], dict[str, str]]:
    """A pattern matching any of `mapping`'s keys as a whole name (a kernel name may be followed
    by a VLAN leg `.110`), and the replacement table."""
    keys = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(
        rf"(?<!{_NAME})(" + "|".join(re.escape(k) for k in keys) + r")(?![A-Za-z0-9_/:-])"
    )
    return pattern, dict(mapping)


def rewrite(text: str, table: tuple[re.Pattern[str], dict[str, str]]) -> str:
    pattern, names = table
    return pattern.sub(lambda m: names[m.group(1)], text) if names else text


def split_tail(text: str) -> tuple[str, str]:
    """(text safe to rewrite now, a trailing partial name to hold until more arrives)."""
    m = re.search(rf"{_NAME}+$", text)
    return (text[: m.start()], text[m.start() :]) if m else (text, "")


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: clifront.py MAP.json -- VTYSH [ARGS...]", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        to_kernel: dict[str, str] = json.load(fh)
    inbound = translator(to_kernel)
    outbound = translator({k: v for v, k in to_kernel.items()})
    command = argv[3:]
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    if original:  # `ssh switch 'show interface'`: one command, no terminal
        command += ["-c", rewrite(original, inbound)]
        os.environ.pop("SSH_ORIGINAL_COMMAND", None)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(command[0], command)  # noqa: S606 - vtysh's argv, no shell involved
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    if interactive:
        import fcntl  # noqa: PLC0415

        size = fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)
        tty.setraw(stdin)
    try:
        _proxy(fd, stdin, stdout, inbound, outbound)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


Table = tuple[re.Pattern[str], dict[str, str]]


def _proxy(fd: int, stdin: int, stdout: int, inbound: Table, outbound: Table) -> None:
    """Copy keystrokes to vtysh by whole lines, and its output back, rewriting names."""
    pending_in, pending_out = "", ""
    poller = select.poll()  # not select(): no descriptor-number limit
    poller.register(fd, select.POLLIN)
    poller.register(stdin, select.POLLIN)
    while True:
        ready = {f for f, _ in poller.poll(50)}
        if not ready and pending_out:  # nothing more came: the held tail is complete
            os.write(stdout, rewrite(pending_out, outbound).encode())
            pending_out = ""
        if fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                break
            now, pending_out = split_tail(pending_out + data.decode("utf-8", "replace"))
            os.write(stdout, rewrite(now, outbound).encode())
        if stdin in ready:
            data = os.read(stdin, 65536)
            if not data:
                break
            pending_in += data.decode("utf-8", "replace")
            *lines, pending_in = re.split(r"(?<=[\r\n])", pending_in)
            if lines:  # whole lines only: a name is never split across writes
                os.write(fd, rewrite("".join(lines), inbound).encode())
    if pending_out:
        os.write(stdout, rewrite(pending_out, outbound).encode())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
