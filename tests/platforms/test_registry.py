"""The registry answers what code used to test by string: how a method's change reaches its
device (a cross-platform method over its own transport, a platform's own method over the
platform's session)."""

from __future__ import annotations

from agent.platforms import registry


def test_a_shared_method_goes_over_its_own_transport_a_platform_method_over_its_session() -> None:
    assert registry.via("snmp") == "snmp"
    specs = [registry.platform(n) for n in registry.names()]
    own = {m for s in specs for m in (s.shuts_by, s.rules_by) if m is not None}
    assert {"cli", "nft"} <= own
    assert {m: registry.via(m) for m in own} == dict.fromkeys(own, "ssh")
