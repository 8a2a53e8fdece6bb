"""`python -m agent`: the `cordon` command line (`agent.cli.main`), nothing else.
Imports `agent.cli` only."""

from agent.cli import main

main()
