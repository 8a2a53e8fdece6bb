"""The run: drives a safe plan through the drivers, journaled step by step (see executor.py for
the public API). Its parts: model (options, outcomes, report), context (what every part shares),
observer (journal + audit + progress writes), strategies (site orderings), walk (one site's
steps and its failure policy), gates/ (one module per gate kind behind one protocol),
transaction (the guarded apply and its dead-man), recovery (rollback, resume, settle).

The package may import plan, render, soak, baseline, state (agent.engine), the drivers, the
journal, audit, the inventory and playbook models and errors; never the daemon, the CLI or the
twin (a flow verifier is injected)."""
