"""Cordon: hospital network isolation orchestration agent.

Owns only the version. Each package says what it may import; the layers are enforced by the
import-linter contract in pyproject.toml (`make lint`). This module imports nothing.
"""

__version__ = "0.1.0"
