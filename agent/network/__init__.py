"""The network model the planner, the platforms and the twin share: where each declared flow goes
(`paths`) and each device's isolation state as data (`state`: ports, nftables rules).

Pure: imports only the inventory models and agent.errors; never a driver, the engine or the twin.
"""
