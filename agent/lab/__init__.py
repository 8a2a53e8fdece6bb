"""The digital twin: network namespaces, real daemons (sshd, FRR, snmpd), services and probes.

The twin may import the inventory, the network model, the platform registry (for the twin modules
of `agent.platforms.<name>`), `agent.settings`, `agent.secrets` and `agent.errors`; never the run,
the service, the API or a driver. Only composition roots (the daemon's `main`, the CLI) import
it. This module imports nothing.
"""
