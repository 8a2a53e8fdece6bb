"""Owns the SNMP transport the drivers share: a sync facade on one private event loop thread, and
the SnmpEngines shared between drivers (`_Engines`): one per process in the usual case, instead
of one per driver (~0.8 MB and a 0.1 s timer each). An engine's USM table holds one set of keys
per user name (its rows are indexed by engine ID and user name, and pysnmp replaces a user whose
keys differ), so drivers whose credentials disagree under the same user name (or v2c community
index) get different engines: their keys can never mix. Every pysnmp object lives on the loop
thread. Imports pysnmp only; no platform, engine or CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, SnmpEngine, UsmUserData
from pysnmp.hlapi.varbinds import MibViewControllerManager

T = TypeVar("T")


class _Loop:
    """One asyncio loop in a daemon thread; `run` submits a coroutine and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="cordon-snmp", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float,
        abandoned: Callable[[T], None] | None = None,
    ) -> T:
        """The coroutine's result; TimeoutError after `timeout` s (the coroutine is cancelled,
        and if it finishes all the same, `abandoned` gets its result on the loop thread)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            if abandoned is not None:
                undo = abandoned

                def late(done: concurrent.futures.Future[T]) -> None:
                    if not done.cancelled() and done.exception() is None:
                        self.loop.call_soon_threadsafe(undo, done.result())

                future.add_done_callback(late)
            raise TimeoutError from None


_loop_lock = threading.Lock()
_loop: _Loop | None = None


def _shared_loop() -> _Loop:
    global _loop  # noqa: PLW0603 - the one private event loop of the SNMP facade
    with _loop_lock:
        if _loop is None:
            _loop = _Loop()
        return _loop


@dataclass(eq=False)
class _Slot:
    """A shared SnmpEngine: the credentials it holds (security name -> their identity), and how
    many open drivers use it."""

    engine: Any
    names: dict[str, Hashable] = field(default_factory=dict)
    users: int = 0


class _Engines:
    """The SnmpEngines the drivers share (only ever touched on the loop thread: no locks).

    A driver takes the first engine where its security name (the SNMPv3 user name, or the v2c
    community index) is free or bound to the very same credentials; another engine is made only
    for a name already bound to other keys. An engine with no driver left is closed."""

    def __init__(self) -> None:
        self.slots: list[_Slot] = []
        self._view: Any = None

    def view(self) -> Any:
        """One MIB view for every engine (hlapi would build a MIB builder per engine)."""
        if self._view is None:
            self._view = MibViewControllerManager.get_mib_view_controller({})
        return self._view

    def acquire(self, name: str, creds: Hashable) -> _Slot:
        for slot in self.slots:
            if slot.names.setdefault(name, creds) == creds:
                slot.users += 1
                return slot
        engine = SnmpEngine()
        engine.cache["mibViewController"] = self.view()  # read by hlapi's varbind processor
        slot = _Slot(engine, {name: creds}, 1)
        self.slots.append(slot)
        return slot

    def release(self, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users <= 0 and slot in self.slots:
            self.slots.remove(slot)
            slot.engine.close_dispatcher()


_engines = _Engines()

_OID_CACHE_SIZE = 2048  # ~1.8 kB each
_oid_cache: OrderedDict[str, Any] = OrderedDict()


def _var(oid: str) -> Any:
    """A value-less ObjectType for `oid`, resolved once (~80 us each) and kept (LRU; loop
    thread only). hlapi resolves every varbind of every request against the MIB; it skips
    ones already resolved."""
    var = _oid_cache.get(oid)
    if var is None:
        var = ObjectType(ObjectIdentity(oid)).resolve_with_mib(_engines.view(), ignoreErrors=False)
        _oid_cache[oid] = var
        if len(_oid_cache) > _OID_CACHE_SIZE:
            _oid_cache.popitem(last=False)
    else:
        _oid_cache.move_to_end(oid)
    return var


_USM_FIELDS = (
    "usm",
    "userName",
    "authentication_key",
    "authentication_protocol",
    "privacy_key",
    "privacy_protocol",
    "securityEngineId",
    "authKeyType",
    "privKeyType",
)
_COMMUNITY_FIELDS = (
    "community",
    "communityIndex",
    "communityName",
    "message_processing_model",
    "tag",
)


def _identity(auth: Any) -> tuple[str, Hashable]:
    """The security name `auth` takes in an engine, and a digest of everything that must agree
    for two drivers to share it under that name (no secret text kept)."""
    fields = _USM_FIELDS if isinstance(auth, UsmUserData) else _COMMUNITY_FIELDS
    parts = (fields[0], *(repr(getattr(auth, f, None)) for f in fields[1:]))
    digest = hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return str(auth.securityName), digest
