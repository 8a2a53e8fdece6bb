"""Site orderings, as plug-ins behind one small protocol: given the sites, the playbook's steps
and a function that walks one site through some steps, an ordering returns the walks of this
`proceed`. serial: one site after the other (the first that waits holds the rest); parallel:
every site on its own, up to `max_parallel_sites` at once; waves: every site finishes a step
before any site starts the next. A new ordering is a class and one line in `ORDERINGS`.
Imports the walk's result type and the playbook models only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from agent.playbook.models import Playbook, Step
from agent.run.walk import Walk

WalkSite = Callable[[str, Sequence[Step]], Walk]


class Ordering(Protocol):
    def walks(self, pb: Playbook, sites: Sequence[str], walk: WalkSite) -> list[Walk]: ...


def _parallel(
    pb: Playbook, sites: Sequence[str], steps: Sequence[Step], walk: WalkSite
) -> list[Walk]:
    workers = max(1, min(pb.limits.max_parallel_sites, 32))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda s: walk(s, steps), sites))


class Serial:
    def walks(self, pb: Playbook, sites: Sequence[str], walk: WalkSite) -> list[Walk]:
        out: list[Walk] = []
        for site in sites:
            out.append(walk(site, pb.steps))
            if out[-1].waiting:
                break
        return out


class Parallel:
    def walks(self, pb: Playbook, sites: Sequence[str], walk: WalkSite) -> list[Walk]:
        return _parallel(pb, sites, pb.steps, walk)


class Waves:
    def walks(self, pb: Playbook, sites: Sequence[str], walk: WalkSite) -> list[Walk]:
        out: list[Walk] = []
        for upto in range(1, len(pb.steps) + 1):
            out = _parallel(pb, sites, pb.steps[:upto], walk)
            if any(w.waiting for w in out):
                break
        return out


ORDERINGS: Mapping[str, Ordering] = {"serial": Serial(), "parallel": Parallel(), "waves": Waves()}
