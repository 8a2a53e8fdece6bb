"""Owns the aruba_aoscx twin device's CLI: the Manager (#) context of an AOS-CX switch for the
commands Cordon types over SSH (`checkpoint auto <1-60>`, `checkpoint auto confirm`,
`show checkpoint`, `no page`, `exit`), as sshd's ForceCommand runs it. The checkpoint state lives
in the twin's API server (`twin_api`), reached over its Unix socket, so an armed timer outlives
this session. Standard library only; run as `python -I twin_cli.py HOSTNAME SOCKET`."""

from __future__ import annotations

import json
import os
import re
import socket
import sys


def ask(path: str, request: dict[str, object]) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return str(json.loads(data or b"{}").get("text", ""))


def answer(line: str, path: str) -> str | None:  # noqa: PLR0911 - one answer per command
    """The switch's answer to one command line; None to log out."""
    words = line.split()
    if not words:
        return ""
    if words in (["exit"], ["end"]):
        return None
    if words == ["no", "page"]:
        return ""
    if words == ["checkpoint", "auto", "confirm"]:
        return ask(path, {"op": "confirm"})
    if words[:2] == ["checkpoint", "auto"] and len(words) == 3:
        if not re.fullmatch(r"[0-9]{1,2}", words[2]) or not 1 <= int(words[2]) <= 60:
            return f"Invalid input: {words[2]}"
        return ask(path, {"op": "arm", "minutes": int(words[2])})
    if words == ["show", "checkpoint"]:
        return ask(path, {"op": "show"})
    return f"Invalid input: {words[0]}"


def main(argv: list[str]) -> int:
    hostname, path = argv[0], argv[1]
    one = os.environ.get("SSH_ORIGINAL_COMMAND")
    if one:
        out = answer(one, path)
        sys.stdout.write((out or "") + "\n")
        return 0
    prompt = f"{hostname}# "
    sys.stdout.write(prompt)
    sys.stdout.flush()
    for raw in sys.stdin:
        out = answer(raw.strip(), path)
        if out is None:
            return 0
        sys.stdout.write((out + "\n" if out else "") + prompt)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
