"""The fortigate driver's ordering, pure: the moves it sends turn any policy table into Cordon's
policies first in the script's order and the site's after them in their own order, moving none
of the site's and each of Cordon's at most once (none already in place)."""

from __future__ import annotations

import random
from typing import Any

from agent.platforms.fortigate.driver import moves


def play(order: list[int], target: list[int], site: list[int]) -> tuple[list[int], list[int]]:
    """The table after FortiOS applies the moves (`before=`/`after=` a neighbour), and the ids
    moved."""
    table, moved = list(order), []
    for pid, where in moves(order, target, site):
        ((how, other),) = where.items()
        table.remove(pid)
        table.insert(table.index(int(other)) + (0 if how == "before" else 1), pid)
        moved.append(pid)
    return table, moved


def test_any_order_converges_with_one_move_per_policy_at_most() -> None:
    rng = random.Random(13)
    for _ in range(2000):
        ours = rng.sample(range(1, 50), rng.randint(1, 9))
        site = [1000 + i for i in range(rng.randint(0, 3))]
        order = ours + site
        rng.shuffle(order)
        target = rng.sample(ours, len(ours))
        in_site_order = [p for p in order if p in site]
        table, moved = play(order, target, in_site_order)
        assert table == target + in_site_order
        assert not set(moved) & set(site)
        assert len(moved) == len(set(moved))


def test_nothing_moves_when_in_place_and_new_ones_move_once() -> None:
    assert moves([1, 2, 3, 1000], [1, 2, 3], [1000]) == []
    # created policies land after the site's: each moves once, right after its predecessor
    assert moves([1, 2, 1000, 7, 8], [1, 2, 7, 8], [1000]) == [
        (7, {"after": "2"}),
        (8, {"after": "7"}),
    ]
    # a first policy created goes before the first one that stays
    assert moves([1, 2, 1000, 9], [9, 1, 2], [1000]) == [(9, {"before": "1"})]
    assert moves([1000, 5], [5], [1000]) == [(5, {"before": "1000"})]
    assert moves([1000], [], [1000]) == []


def test_policies_are_deleted_from_the_bottom_of_the_table_up() -> None:
    """Cordon's accepts for must-survive flows sit above its drops: deleting them first (table
    order) would cut those flows until the drops below were deleted too (seen by a drill's
    continuous probes during restore-normal); from the bottom up, no flow goes through a verdict
    that is neither its current one nor its final one."""

    from agent.platforms.fortigate.driver import FortiGateDriver  # noqa: PLC0415

    drv = object.__new__(FortiGateDriver)
    deleted: list[str] = []

    def write(method: str, path: str, what: str, **_kw: Any) -> str:
        assert method == "DELETE"
        deleted.append(what)
        return f"{method} {path} {what}"

    drv._write = write  # type: ignore[method-assign]
    rows = [{"policyid": pid, "name": name} for pid, name in ((7, "keep"), (3, "drop"), (9, "x"))]
    rows.append({"policyid": 1000, "name": "site-allow"})
    current = {"keep": "k", "drop": "d", "x": "x"}  # Cordon's, read in whatever order
    done = drv._converge_table(
        "firewall/policy", rows, current, [], lambda r: None if r["policyid"] == 1000 else r["name"]
    )
    assert deleted == ["x", "drop", "keep"]
    assert len(done) == 3


def test_a_merged_deny_renamed_is_replaced_before_it_is_deleted() -> None:
    """A merged deny changes name when its members change (`render.merge`): its successor is
    created and moved into place above it before it is deleted, so what both cut is never open;
    the table the calls leave is the wanted one."""

    from agent.platforms.fortigate.driver import FortiGateDriver  # noqa: PLC0415

    drv = object.__new__(FortiGateDriver)
    table = [5, 1000]  # cordon-gold (ours), then the site's
    names = {5: "cordon-gold", 1000: "site-allow"}
    calls: list[str] = []

    def call(method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert method == "POST"
        names[6] = kw["body"]["name"]
        table.append(6)
        calls.append("POST")
        return {"mkey": 6}

    def write(method: str, path: str, what: str, **kw: Any) -> str:
        pid = int(path.rsplit("/", 1)[1])
        if method == "DELETE":
            assert 6 in table[: table.index(pid)], "deleted before its successor was above it"
            table.remove(pid)
        else:
            ((how, other),) = {k: v for k, v in kw["query"].items() if k != "action"}.items()
            table.remove(pid)
            table.insert(table.index(int(other)) + (0 if how == "before" else 1), pid)
        calls.append(method)
        return method

    drv._call = call  # type: ignore[method-assign]
    drv._write = write  # type: ignore[method-assign]
    rows = [{"policyid": pid, "name": names[pid]} for pid in table]
    drv._converge_table(
        "firewall/policy",
        rows,
        {"cordon-gold": "old"},
        [("cordon-gnew", "new", {"name": "cordon-gnew"})],
        lambda r: r["name"] if r["name"].startswith("cordon-") else None,
    )
    assert calls == ["POST", "PUT", "DELETE"]
    assert table == [6, 1000]


# -- round trips (#18): the REST calls the driver makes, recorded at its one call ---------------


def _recording(
    ports: list[dict[str, str]] | None = None, save: str = "automatic"
) -> tuple[Any, list[str]]:
    """A FortiGate driver holding none of Cordon's objects and `ports`, in `save` mode
    (`cfg-save`), every call recorded (`METHOD path`); nothing connected."""
    from pathlib import Path  # noqa: PLC0415

    from agent.drivers.base import Target  # noqa: PLC0415
    from agent.inventory import load  # noqa: PLC0415
    from agent.platforms.fortigate.driver import GLOBAL, INTERFACE, FortiGateDriver  # noqa: PLC0415

    inv = load(Path(__file__).with_name("data") / "fortigate-small.yaml")
    drv = FortiGateDriver(Target.of(inv, "fg-fw"))
    calls: list[str] = []

    def call(method: str, path: str, **_kw: Any) -> dict[str, Any]:
        calls.append(f"{method} {path}")
        if method != "GET":
            return {"status": "success"}
        if path == GLOBAL:
            return {"results": {"cfg-save": save, "cfg-revert-timeout": 600}}
        return {"results": (ports or []) if path == INTERFACE else []}

    drv._call = call  # type: ignore[method-assign]
    return drv, calls


def test_a_confirm_reads_the_device_back_once_after_saving() -> None:
    drv, calls = _recording()
    drv._armed, drv._applied = "t", []
    assert drv.confirm("t") is True
    assert calls[:2] == ["POST monitor/system/config/save", "PUT cmdb/system/global"]
    assert calls.count("GET cmdb/firewall/policy") == 1  # one read of the tables, after the save


def test_a_flow_verification_reads_the_admin_status_in_one_get() -> None:
    drv, calls = _recording([{"name": "port1", "status": "down"}])
    (port,) = drv.interfaces("decide")
    assert (port.admin_up, port.oper_up) == (False, None)  # the link not read: unknown
    assert calls == ["GET cmdb/system/interface"]


def _normal() -> Any:
    from agent.drivers.base import ChangeSet  # noqa: PLC0415
    from agent.network.state import DeviceState  # noqa: PLC0415
    from agent.platforms.fortigate import render  # noqa: PLC0415

    return ChangeSet(tuple(render.script(DeviceState()).splitlines()), action="test")


def test_a_change_writing_nothing_still_saves_unless_the_device_saves_by_itself() -> None:
    """Cordon's objects already as wanted (nothing written): in manual save mode an earlier
    save may have failed after its writes, so the configuration is saved anyway (else lost
    on reboot); in automatic mode the device saved each write itself: no save."""
    drv, calls = _recording(save="manual")
    drv.apply(_normal())
    assert not [c for c in calls if c.startswith(("PUT", "DELETE"))]  # nothing written
    assert calls[-1] == "POST monitor/system/config/save"
    drv, calls = _recording(save="automatic")
    drv.apply(_normal())
    assert "POST monitor/system/config/save" not in calls
    assert calls[-1] == "GET cmdb/system/global"  # the mode read, nothing written or saved


def test_a_confirm_after_the_revert_fired_returns_false() -> None:
    """The revert ran before the confirm: the objects read after the save are not the ones
    applied (back to the saved configuration): confirm says it fired."""
    drv, calls = _recording()
    drv._armed, drv._applied = "t", ["address cordon-a subnet=198.18.0.1/32"]
    assert drv.confirm("t") is False
    assert calls[:2] == ["POST monitor/system/config/save", "PUT cmdb/system/global"]
