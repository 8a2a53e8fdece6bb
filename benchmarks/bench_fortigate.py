"""FortiGate apply + read-back time on its twin.

`python -m benchmarks.bench_fortigate [N]`: on the small twin (tests/platforms/fortigate/data),
`apply_readback(inv, device, n)` alternates a WAN cut and its undo through the fortigate driver;
prints the median and max of apply + verify.

`python -m benchmarks.bench_fortigate steps`: the shipped playbooks' big FortiGate steps, on the
example group's La Sagesse (inventory/hospi-grand-ouest.yaml reduced to the core and
rennes-la-sagesse, so the twin builds in seconds; rns-fw1 and its rule sets are the example's):
isolate-site then reconnect (soaks of 1 s, every zone attested) run by the executor, and for
each FortiGate step its time and the REST requests the twin served (its API log).

Both build the twin under the machine-wide lock and take it down."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent import audit
from agent.drivers.base import ChangeSet, Expectation, Target
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.engine.plan import zones_of
from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build
from agent.network.state import DeviceState, NftRule
from agent.platforms.fortigate import render
from agent.platforms.fortigate.driver import FortiGateDriver
from agent.playbook import load as load_playbook
from agent.playbook.models import ReconnectZone
from agent.run.executor import Executor
from agent.run.model import RunOptions

ROOT = Path(__file__).parents[1]
INV = ROOT / "tests" / "platforms" / "fortigate" / "data" / "fortigate-small.yaml"
EXAMPLE = ROOT / "inventory" / "hospi-grand-ouest.yaml"
SITE, FW = "rennes-la-sagesse", "rns-fw1"


def apply_readback(inv: Inventory, device: str, n: int, wan: str = "wan1") -> list[float]:
    """Seconds of each of `n` changes (apply then verify by read-back), on a warm connection."""
    cut = DeviceState(rules=frozenset({NftRule("drop", iif=wan), NftRule("drop", oif=wan)}))
    d = FortiGateDriver(Target.of(inv, device))
    out = []
    try:
        for i in range(n):
            state = cut if i % 2 == 0 else DeviceState()
            t = time.perf_counter()
            d.apply(ChangeSet(tuple(render.script(state).splitlines())))
            d.verify(
                Expectation(table_present=bool(state.rules), rule_comments=render.comments(state))
            )
            out.append(time.perf_counter() - t)
    finally:
        d.close()
    return out


def reduced_example(directory: Path) -> Path:
    """The example inventory with only its core, La Sagesse and the outside sites they link to
    (and the flows between them)."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    keep = {data["group"]["core"], SITE, "internet", "remote-access", "vendors"}
    gone = {
        (link["peer_device"], link["peer_interface"])
        for s in data["sites"]
        if s["name"] not in keep
        for link in s.get("links", [])
        if "peer_device" in link and "peer_interface" in link
    }
    data["sites"] = [s for s in data["sites"] if s["name"] in keep]
    for s in data["sites"]:  # the far ends of the links of the sites left out
        for d in s.get("devices", []):
            d["interfaces"] = [i for i in d["interfaces"] if (d["name"], i["name"]) not in gone]
    data["flows"] = [
        f
        for f in data.get("flows", [])
        if f["from"].split("/")[0] in keep and f["to"].split("/")[0] in keep
    ]
    path = directory / "hgo-rennes.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _requests(log: Path) -> int:
    return len(log.read_text(errors="replace").splitlines()) if log.exists() else 0


def steps(*, lock: bool = True) -> None:
    """Build the reduced example twin (under the machine-wide lock unless the caller holds
    it), time the FortiGate steps, take it down."""
    with tempfile.TemporaryDirectory(prefix="cordon-bench-fg-") as tmp:
        base = Path(tmp)
        os.environ["CORDON_STATE_DIR"] = str(base / "state")
        os.environ["CORDON_LOG_DIR"] = str(base / "log")
        audit.configure(base / "log", console=False)
        inv = load(reduced_example(base))
        with build.exclusive(print) if lock else contextlib.nullcontext():
            state = build.up(inv)
            log = state.dir / FW / "fortios-api.out"
            try:
                _steps(inv, base, log)
            finally:
                build.down()
        audit.close()


def small(n: int, *, lock: bool = True) -> None:
    """Build the small twin, measure `n` changes, print the median and max, take it down."""
    inv = load(INV)
    with build.exclusive(print) if lock else contextlib.nullcontext():
        build.up(inv)
        try:
            times = apply_readback(inv, "fg-fw", n)
        finally:
            build.down()
    print(
        f"fortigate apply + read-back: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms over {n} changes (a 2-policy WAN cut, then its undo)"
    )


def _steps(inv: Inventory, base: Path, log: Path) -> None:
    isolate = load_playbook(ROOT / "playbooks" / "isolate-site.yaml", inv)
    reconnect = load_playbook(ROOT / "playbooks" / "reconnect.yaml", inv)
    journal = Journal(base / "journal.sqlite")
    rows: list[tuple[str, str, int]] = []
    with Pool(inv, keepalive=None) as pool:
        ex = Executor(inv, journal, pool, actor="bench")
        obs = ex.observer
        marks: dict[int, int] = {}
        started, done = obs.step_started, obs.step_done

        def on_start(row: Any) -> None:
            marks[row.seq] = _requests(log)
            started(row)

        def on_done(row: Any, status: str) -> None:
            done(row, status)
            if row.device == FW:
                rows.append((row.step, status, _requests(log) - marks.get(row.seq, 0)))

        obs.step_started, obs.step_done = on_start, on_done  # type: ignore[method-assign]
        runs = [ex.run(isolate, [SITE])]
        site = inv.site(SITE)
        assert site is not None
        zones = sorted(
            {
                z.name
                for s in reconnect.steps
                if isinstance(s, ReconnectZone)
                for z in zones_of(site, s.zones)
            }
        )
        opts = RunOptions(soak_seconds=1.0, attest={z: "bench" for z in zones})
        runs.append(ex.run(reconnect, [SITE], options=opts, poll=0.2))
    journal.close()
    times = {(o.step, o.device): o.duration_s for r in runs for o in r.outcomes}
    print(f"{'step':<28} {'status':<9} {'seconds':>8} {'requests':>9}")
    for step, status, n in rows:
        print(f"{step:<28} {status:<9} {times.get((step, FW), 0.0):8.2f} {n:9d}")
    print("runs:", ", ".join(f"{r.run_id} {r.status} {r.duration_s:.1f} s" for r in runs))


def main() -> None:
    if sys.argv[1:2] == ["steps"]:
        steps()
    else:
        small(int(sys.argv[1]) if len(sys.argv) > 1 else 20)


if __name__ == "__main__":
    main()
