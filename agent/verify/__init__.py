"""Flow verification from several sources (#15): what each source saw of each declared flow
(`evidence`), and how the sources' evidence becomes one verdict per flow. The sources are the
enforcing devices' own decisions, the counters of the rules that keep must-survive flows open, the
sites' probe points and, on the twin, the twin's prober. Sits below the run (which asks it) and
above the platforms and drivers (which the device-side sources read); never imports the twin."""
