"""The soak gate's checks, as data: which counters watch which reconnected zone, and whether two
samples taken `dt` seconds apart show an anomaly. Reading the samples is the executor's (through
the drivers); deciding is here. Which comment keys a counting rule is its platform's (through the
registry). Pure: imports the plan, the network state types, the inventory models and the
registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.engine.plan import zone_of_tag
from agent.inventory.models import Site
from agent.network.state import NORMAL, DeviceState
from agent.platforms import registry


@dataclass(frozen=True)
class Sample:
    at: float
    # device -> rule comment -> new connections counted since the rule was loaded
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    # "device interface" -> packets out of the WAN uplink (SNMP)
    uplink: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at, "counters": self.counters, "uplink": self.uplink}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Sample:
        counters = raw.get("counters") or {}
        uplink = raw.get("uplink") or {}
        assert isinstance(counters, dict)
        assert isinstance(uplink, dict)
        at = raw.get("at")
        assert isinstance(at, int | float)
        return cls(float(at), counters, uplink)


@dataclass(frozen=True)
class Anomaly:
    zone: str | None  # the zone at fault, when the check can tell
    what: str


def watched(site: Site, states: Mapping[str, DeviceState]) -> dict[str, dict[str, str]]:
    """device -> counter comment -> zone, for every reconnected zone of `site`."""
    out: dict[str, dict[str, str]] = {}
    for dev in site.devices:
        recorded = states.get(dev.name, NORMAL).rules
        rules = registry.platform(dev.platform).rules if recorded else None
        if rules is None:
            continue
        for rule in recorded:
            zone = zone_of_tag(rule.tag)
            if rule.verdict == "count" and zone is not None:
                out.setdefault(dev.name, {})[rules.counted_as(rule)] = zone
    return out


def evaluate(
    prev: Sample | None,
    cur: Sample,
    watch: Mapping[str, Mapping[str, str]],
    *,
    max_new_per_s: float,
    max_uplink_pps: float | None,
) -> list[Anomaly]:
    """Anomalies between two samples: a zone opening new connections toward the core outside
    its declared flows faster than allowed, or the uplink sending more packets than allowed."""
    if prev is None:
        return []
    dt = max(cur.at - prev.at, 1e-3)
    out: list[Anomaly] = []
    for device, comments in sorted(watch.items()):
        for text, zone in sorted(comments.items()):
            before = prev.counters.get(device, {}).get(text)
            now = cur.counters.get(device, {}).get(text)
            if now is None:
                out.append(Anomaly(zone, f"{device}: counter of zone {zone} is missing"))
                continue
            if before is None:  # a zone reconnected since the last sample: starts now
                continue
            new = max(now - before, 0)
            rate = new / dt
            if rate > max_new_per_s:
                out.append(
                    Anomaly(
                        zone,
                        f"zone {zone}: {new} new connections toward the core outside its "
                        f"declared flows in {dt:.1f} s ({rate:.1f}/s, max {max_new_per_s:g}/s)",
                    )
                )
    if max_uplink_pps is not None:
        for key, now in sorted(cur.uplink.items()):
            before = prev.uplink.get(key)
            if before is None:
                continue
            pps = max(now - before, 0) / dt
            if pps > max_uplink_pps:
                out.append(
                    Anomaly(
                        None,
                        f"uplink {key}: {pps:.0f} packets/s out (max {max_uplink_pps:g}/s)",
                    )
                )
    return out
