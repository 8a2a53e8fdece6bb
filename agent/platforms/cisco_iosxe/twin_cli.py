"""The cisco_iosxe twin's login program: sshd's ForceCommand runs it; it relays each line typed
(or the one command of `ssh switch 'show ...'`) to the device's daemon (`twin_device`, a Unix
socket) and prints its answer and prompt, so the device's state and its revert timer outlive the
session. Only the twin uses it. Standard library only (run as `python -I twin_cli.py SOCKET`).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TextIO


def _ask(f_in: TextIO, f_out: TextIO, message: dict[str, str]) -> dict[str, object]:
    f_out.write(json.dumps(message) + "\n")
    f_out.flush()
    line = f_in.readline()
    if not line:
        raise EOFError
    answer: dict[str, object] = json.loads(line)
    return answer


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: twin_cli.py SOCKET", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[1])
    except OSError:
        print("% Connection refused by remote host", flush=True)
        return 1
    f_in, f_out = sock.makefile("r", encoding="utf-8"), sock.makefile("w", encoding="utf-8")
    user = os.environ.get("USER", "cordon")
    hello = _ask(f_in, f_out, {"hello": user})
    single = os.environ.get("SSH_ORIGINAL_COMMAND")
    out = sys.stdout
    try:
        if single:
            answer = _ask(f_in, f_out, {"line": single})
            out.write(str(answer.get("out", "")))
            out.flush()
            return 0
        out.write(str(hello.get("out", "")) + str(hello["prompt"]))
        out.flush()
        while True:
            raw = sys.stdin.readline()
            if not raw:
                return 0
            answer = _ask(f_in, f_out, {"line": raw.rstrip("\r\n")})
            out.write(str(answer.get("out", "")))
            if answer.get("close"):
                out.flush()
                return 0
            out.write(str(answer["prompt"]))
            out.flush()
    except (EOFError, OSError, KeyboardInterrupt):
        return 0
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
