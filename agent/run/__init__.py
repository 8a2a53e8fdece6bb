"""The run: drives a safe plan through the drivers, journaled step by step (see executor.py for
the public API). Its parts: model (options, outcomes, report), context (what every part shares),
observer (journal + audit + progress writes), strategies (site orderings), walk (one site's
steps and its failure policy), gates/ (one module per gate kind behind one protocol),
transaction (the guarded apply and its dead-man), recovery (rollback, resume, settle).

The package may import the engine (plan, soak, baseline, journal), the network state types, the
drivers, the platform registry and capabilities, audit, the inventory and playbook models, status,
settings and errors; never the service, the API, the daemon, the CLI or the twin (the flow
sources are injected). This module imports nothing."""
