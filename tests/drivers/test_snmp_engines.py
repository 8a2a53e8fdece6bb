"""The SNMP drivers' shared pysnmp engines, without a network: drivers with the same credentials
share one engine; the same user name with other keys (or protocols) never shares an engine with
them; an engine closes with its last driver only; OIDs are resolved once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    UsmUserData,
    usmAesCfb128Protocol,
    usmAesCfb256Protocol,
    usmHMACSHAAuthProtocol,
)

from agent.drivers import snmp
from agent.drivers.snmp import _Engines, _identity, _shared_loop, _Slot, _var
from agent.platforms.snmp.driver import SnmpDriver


def usm(
    user: str, auth: str = "auth-passphrase-1", priv: str = "priv-passphrase-1", **kw: Any
) -> Any:
    return UsmUserData(
        user,
        auth,
        priv,
        authProtocol=usmHMACSHAAuthProtocol,
        privProtocol=kw.pop("privProtocol", usmAesCfb128Protocol),
        **kw,
    )


@pytest.fixture
def engines() -> Iterator[_Engines]:
    """A registry of its own, driven on the drivers' loop thread as the drivers do."""
    reg = _Engines()
    yield reg
    for slot in list(reg.slots):
        slot.users = 1
        on_loop(reg.release, slot)


def on_loop(fn: Any, *args: Any) -> Any:
    async def call() -> Any:
        return fn(*args)

    return _shared_loop().run(call(), 10.0)


def take(reg: _Engines, auth: Any) -> _Slot:
    slot: _Slot = on_loop(reg.acquire, *_identity(auth))
    return slot


def test_same_credentials_share_one_engine(engines: _Engines) -> None:
    a, b, c = (take(engines, usm("cordon")) for _ in range(3))
    assert a is b is c
    assert a.users == 3 and len(engines.slots) == 1


def test_other_users_share_the_engine(engines: _Engines) -> None:
    a = take(engines, usm("cordon"))
    b = take(engines, usm("monitor", "another-auth-key", "another-priv-key"))
    v2c = take(engines, CommunityData("a-community", mpModel=1))
    assert a is b is v2c


@pytest.mark.parametrize(
    "other",
    [
        {"auth": "auth-passphrase-2"},
        {"priv": "priv-passphrase-2"},
        {"privProtocol": usmAesCfb256Protocol},
    ],
    ids=["auth key", "priv key", "priv protocol"],
)
def test_same_user_other_keys_never_share(engines: _Engines, other: dict[str, Any]) -> None:
    """pysnmp keeps one USM row per (engine ID, user name) and replaces it when keys differ:
    sharing would give one device's requests the other's keys."""
    a = take(engines, usm("cordon"))
    b = take(engines, usm("cordon", **other))
    assert a is not b
    assert a.engine is not b.engine
    # a third device with either set joins the matching engine
    assert take(engines, usm("cordon")) is a
    assert take(engines, usm("cordon", **other)) is b


def test_identity_keeps_no_secret_text() -> None:
    name, creds = _identity(usm("cordon", "auth-passphrase-1", "priv-passphrase-1"))
    assert name == "cordon"
    assert "passphrase" not in repr(creds)
    assert _identity(usm("cordon")) == _identity(usm("cordon"))
    assert _identity(usm("cordon"))[1] != _identity(usm("cordon", auth="x-auth-passphrase"))[1]


def test_engine_closes_with_its_last_driver_only(engines: _Engines) -> None:
    closed: list[Any] = []
    a = take(engines, usm("cordon"))
    take(engines, usm("cordon"))
    a.engine.close_dispatcher = lambda: closed.append(a.engine)
    on_loop(engines.release, a)
    assert not closed and engines.slots == [a]
    on_loop(engines.release, a)
    assert closed == [a.engine] and engines.slots == []
    assert take(engines, usm("cordon")) is not a  # a new engine after the last one closed


def test_a_closed_driver_leaves_the_others_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() of one driver releases its share only (no network: the slots are set by hand)."""
    reg = _Engines()
    monkeypatch.setattr(snmp, "_engines", reg)
    slot = take(reg, usm("cordon"))
    take(reg, usm("cordon"))
    drivers = [object.__new__(SnmpDriver) for _ in range(2)]
    for d in drivers:
        d._slot, d._auth, d._udp = slot, None, None
    drivers[0].close()
    drivers[0].close()  # idempotent
    assert not drivers[0].is_open() and drivers[1].is_open()
    assert reg.slots == [slot] and slot.users == 1
    drivers[1].close()
    assert reg.slots == []


def test_oids_are_resolved_once() -> None:
    async def both() -> tuple[Any, Any]:
        return _var("1.3.6.1.2.1.2.2.1.7.4"), _var("1.3.6.1.2.1.2.2.1.7.4")

    first, again = _shared_loop().run(both(), 10.0)
    assert first is again
    assert str(first[0]) == "1.3.6.1.2.1.2.2.1.7.4"
