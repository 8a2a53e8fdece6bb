"""Owns the aruba_aoscx twin device's CLI: the Manager (#) context of an AOS-CX switch for the
commands Cordon types over SSH (`checkpoint auto <1-60>`, `checkpoint auto confirm`,
`show checkpoint`, `no page`, `exit`), as sshd's ForceCommand runs it. The checkpoint state lives
in the twin's API server (`twin_api`), reached over its Unix socket, so an armed timer outlives
this session. As HPE's CLI guide shows (`checkpoint auto`), the session that armed it is then
told, by itself, after its prompt: `WARNING  Please "checkpoint auto confirm" within 2 minutes`
and a new prompt (2 minutes before the end; for a shorter timer, the twin's choice: halfway).
Standard library only; run as `python -I twin_cli.py HOSTNAME SOCKET`."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading

_OUT = threading.Lock()  # the answers and the switch's own warning, one write at a time


def ask(path: str, request: dict[str, object]) -> str:
    return str(call(path, request).get("text", ""))


def call(path: str, request: dict[str, object]) -> dict[str, object]:
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
    said = json.loads(data or b"{}")
    return said if isinstance(said, dict) else {}


def write(text: str) -> None:
    with _OUT:
        sys.stdout.write(text)
        sys.stdout.flush()


def warn_later(said: dict[str, object], prompt: str) -> threading.Timer | None:
    """Armed: the warning the switch prints into this session before the checkpoint ends."""
    warn_s = said.get("warn_s")
    if not isinstance(warn_s, float | int):
        return None
    line = f'WARNING  Please "checkpoint auto confirm" within {said.get("left")} minutes\n'
    timer = threading.Timer(float(warn_s), write, args=(line + prompt,))
    timer.daemon = True
    timer.start()
    return timer


_ARMED: list[dict[str, object]] = []  # an arm's answer, for its warning once the prompt is out


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
        said = call(path, {"op": "arm", "minutes": int(words[2])})
        _ARMED.append(said)
        return str(said.get("text", ""))
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
    write(prompt)
    timers: list[threading.Timer] = []
    try:
        for raw in sys.stdin:
            out = answer(raw.strip(), path)
            if out is None:
                return 0
            write((out + "\n" if out else "") + prompt)
            while _ARMED:
                if (timer := warn_later(_ARMED.pop(), prompt)) is not None:
                    timers.append(timer)
            if raw.split() == ["checkpoint", "auto", "confirm"]:
                for timer in timers:
                    timer.cancel()
    finally:
        for timer in timers:
            timer.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
