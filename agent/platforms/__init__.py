"""Owns the device platforms, one folder each: its renderer (isolation state -> commands), its
driver (transport + read-back parser), its native safety net if it has one, and the twin device
that emulates it (`twin`, loaded by the lab only, through the registry).
`registry` maps an inventory platform (and the cross-platform SNMP method) to its `Spec`;
`capabilities` declares what a driver may offer beyond the `Driver` protocol. Folders import the
network state types, the shared transports of `agent.drivers`, audit and errors; never the engine,
the run, the daemon or the CLI. Only a folder's `twin` module imports the twin's primitives
(`agent.lab`). This module imports nothing."""
