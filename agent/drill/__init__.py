"""`cordon drill`: the yearly cyber-crisis exercise (CaRE) on a twin of the group's own inventory.

`sandbox` renumbers a real inventory into a sandbox copy (198.18.0.0/16 data, 198.19.0.0/16
management, twin-generated secrets) and refuses anything it cannot move there; `scenario` reads
and validates a scenario file; `exercise` plays it on the twin through the real engine and
drivers; `record` turns what happened (the drill's own audit log and probes) into the exercise
report (`render_text`, and `render_html` with a print stylesheet).

Layer: beside the command line's composition roots (above `agent.run` and `agent.lab`).
"""
