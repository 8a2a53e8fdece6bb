"""Finds secrets of the twin in text: used by the suite-wide scan of test output and log files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Fragments shorter than this are too likely to match by chance (and are not secret alone).
MIN_FRAGMENT = 16


def fragments(secret: str) -> list[str]:
    """The pieces of a secret worth searching for: the whole value, and each long line of it
    (a private key leaks line by line as often as whole)."""
    pieces = {secret.strip()}
    for raw in secret.splitlines():
        line = raw.strip()
        if len(line) >= MIN_FRAGMENT and not line.startswith("-----"):
            pieces.add(line)
    return [p for p in pieces if len(p) >= 8]


def find(text: str, secrets: Iterable[str]) -> list[str]:
    """Which secrets (by a redacted label, never the value) appear in `text`."""
    hits = []
    for index, secret in enumerate(secrets):
        if any(piece in text for piece in fragments(secret)):
            hits.append(f"secret #{index} ({len(secret)} chars)")
    return hits


def scan_tree(root: Path, secrets: list[str]) -> list[str]:
    """Every file under `root` containing a secret: 'path: secret #N'."""
    found: list[str] = []
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        if path.is_file():
            try:
                text = path.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            found.extend(f"{path}: {hit}" for hit in find(text, secrets))
    return found
