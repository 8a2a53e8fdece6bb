"""Developer tools outside the runtime package: the example-inventory generator (`synth`) that
tests and benchmarks also import. Never imported by `agent/`; may import `agent`."""
