"""Warm SSH sessions to a ~500-device fleet in one process, past 1,024 descriptors: every device's
session opened (`Pool.warm`), then a containment-sized change on every one at once (its nftables
table replaced and read back), through the real nftables driver and the pool the daemon uses.

The fleet is `benchmarks.fleet` on the twin (one namespace, one sshd answering for every device
address). Its sshd gives a shell, not an IOS CLI, so every device, switches included, is driven as
a Linux nftables firewall; they all share the fleet namespace's one `table inet cordon`, so each
writes the very table the fleet records (the same content: the fleet ends as it began).

The process starts with a soft open-file limit of 1,024 (the usual default; the hard one is left
as is): the pool raises it (`agent.drivers.limits`). Before poll() replaced select() in the
drivers' read loops, the first command on a session numbered above 1,024 failed with
"ValueError: filedescriptor out of range in select()".

Run as root: `.venv/bin/python -m benchmarks.bench_warm_fleet [--sites 50] [--per-site 10]`.
Holds the twin lock; brings the twin up if none is (and takes it down after); the fleet is always
taken down.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from agent.drivers import Driver, Expectation, Pool, Target, Timeouts, Via
from agent.inventory.models import Inventory
from agent.platforms.linux_nftables import render
from agent.platforms.linux_nftables.driver import NftablesDriver, nft_replace
from benchmarks import fleet
from benchmarks.machine import describe


def nft_only(target: Target, timeouts: Timeouts, via: Via) -> Driver:
    return NftablesDriver(target, timeouts)


def open_fds() -> tuple[int, int]:
    """(count, highest) of this process's open descriptors."""
    fds = [int(n) for n in os.listdir("/proc/self/fd")]
    return len(fds), max(fds)


def run(inv: Inventory, workers: int) -> None:
    n = len(inv.devices())
    # the table's content: render's script is "table {}", "delete table", "table {", body, "}"
    body = render.nft_table(fleet.firewall_state()).strip().splitlines()[3:-1]
    expect = render.nft_comments(fleet.firewall_state())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"open-file limit at start: soft {soft:,}, hard {hard:,}")
    timeouts = Timeouts(connect=30.0, command=60.0, settle=30.0)
    with Pool(inv, keepalive=None, max_size=2 * n, timeouts=timeouts, factory=nft_only) as pool:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print(f"open-file soft limit after the pool: {soft:,}")
        names = [d.name for _s, d in inv.devices()]
        t = time.perf_counter()
        warm = pool.warm(names)
        warm_s = time.perf_counter() - t
        bad = [f"{o.device}: {o.error}" for o in warm if not o.ok]
        count, top = open_fds()
        print(
            f"warm: {n - len(bad)}/{n} sessions in {warm_s:.1f} s; "
            f"{count:,} descriptors open, highest {top:,}"
        )
        for line in bad[:5]:
            print(f"  {line}")

        def contain(d: Driver) -> None:
            d.apply(nft_replace(body, action="bench.warm_fleet"))
            d.verify(Expectation(rule_comments=expect))

        t = time.perf_counter()
        done = pool.run_many(names, contain, max_workers=workers)
        contain_s = time.perf_counter() - t
        failed = [f"{o.device}: {o.error}" for o in done if not o.ok]
        count, top = open_fds()
        print(
            f"contain (replace + read back on every device, {workers} workers): "
            f"{n - len(failed)}/{n} ok in {contain_s:.1f} s; "
            f"{count:,} descriptors open, highest {top:,}"
        )
        for line in failed[:5]:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--per-site", type=int, default=10)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    print(describe())
    with fleet.on_twin(args.sites, args.per_site) as fleet_inv:
        run(fleet_inv, args.workers)


if __name__ == "__main__":
    main()
