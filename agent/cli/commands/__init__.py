"""The `cordon` commands, one module per command group; `COMMANDS` is the one place that
registers them on the top-level group (`agent.cli.main`).

Imports click and the command modules only.
"""
