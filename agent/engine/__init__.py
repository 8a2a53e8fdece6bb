"""The engine's pure decisions and its journal: `plan` (playbook + inventory -> exact plan),
`render` (state change -> commands, through the platform registry), `drift`, `baseline`, `soak`
(checks as data) and `journal` (the SQLite record of runs, steps and state).

The engine may import the platform registry, the network model, the inventory and playbook
models, `agent.status`, `agent.settings` and `agent.errors`; never the run (`agent.run`), the
service, the API, the daemon, the CLI, a driver or the twin. This module imports nothing.
"""
