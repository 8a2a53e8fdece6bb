"""`python -m agent.probe CONFIG`: the probe point process (what `cordon probe run` runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.errors import CordonError
from agent.probe import config, server


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agent.probe CONFIG\n")
        return 2
    try:
        server.serve(config.load(Path(argv[0])))
    except CordonError as exc:
        sys.stderr.write(f"error: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
