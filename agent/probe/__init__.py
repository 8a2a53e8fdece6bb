"""Probe points (#15): a small process a site runs on a host or VM with a leg in each zone's VLAN
(`cordon probe run`). On the daemon's order, over mutual TLS with both certificates pinned, it
opens declared TCP flows from its own address in the flow's source zone, on demand and on a
schedule, and reports what the network answered. The only flow-verification source that proves a
flow end to end; its limit: the source address is the probe's, not the flow's real source host.

Modules: protocol (orders, results, strict validation), tcp (opening the flows), channel (mutual
TLS, pins, identities), config (the probe's own file), server (the process), client (the daemon's
side). Imports the standard library, pydantic, cryptography and Cordon's lowest layers only."""
