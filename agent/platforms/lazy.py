"""Owns loading a platform's renderers and parsers only when one is first called (#18): a platform
folder's registration names them through `module(...)`, so importing the registry (every
platform's name and capabilities) loads no platform's render or parse module, and a run loads
those of the platforms its inventory uses only.
Type checkers see the real module instead (the folder imports it under `TYPE_CHECKING`), so each
registered function is checked against its slot in `Spec`. Only functions are reached this way:
a constant a registration needs (a method name) is the folder's own. Imports nothing of Cordon."""

from __future__ import annotations

import importlib
from typing import Any


class Deferred:
    """Function `name` of module `module`, imported at its first call."""

    __slots__ = ("_found", "module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name
        self._found: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        found = self._found
        if found is None:
            found = getattr(importlib.import_module(self.module), self.name)
            if not callable(found):
                raise TypeError(f"{self.module}.{self.name} is not a function")
            self._found = found
        return found(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.module}.{self.name}, imported at its first call>"


class Module:
    """Module `name`, not imported: each attribute is its function of that name, `Deferred`."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Deferred:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Deferred(self._name, attr)


def module(name: str) -> Any:
    """Module `name`, whose functions import it at their first call (typed as the module where
    the caller imports it under `TYPE_CHECKING`)."""
    return Module(name)
