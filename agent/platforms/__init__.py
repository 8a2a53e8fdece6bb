"""Owns the device platforms, one folder each: its renderer (isolation state -> commands), its
driver (transport + read-back parser), its native safety net if it has one (the twins that emulate
them are still in `agent.lab`).
`registry` maps an inventory platform (and the cross-platform SNMP method) to its `Spec`;
`capabilities` declares what a driver may offer beyond the `Driver` protocol. Folders import the
plan's state types, the shared transports of `agent.drivers`, audit and errors; never the engine's
executor, the daemon, the CLI or the twin."""
