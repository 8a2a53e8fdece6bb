"""The application behind the daemon's API and `cordon ... --local`: `service` (the `Service`:
one inventory, one journal, one warm device pool, the scheduler), `jobs` (the scheduler's jobs,
module-level so the job store can name them), `poll` (drift polling) and `health` (its store).

The service may import the executor (`agent.run`) and everything below it, and `agent.wire` (it
builds every answer through a wire model); never the API, the daemon process, the CLI, click or
the twin (the flow sources are given to it by a composition root). This module imports nothing.
"""
