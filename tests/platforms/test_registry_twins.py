"""A platform's twin device is in its folder, reached through the registry, and loaded only when
the lab asks: planning and driving devices never import the twin (nor `agent.lab`)."""

from __future__ import annotations

import subprocess
import sys

from agent.platforms import registry


def test_planning_imports_no_twin() -> None:
    """In a fresh interpreter, the registry, the planner and the executor are imported and a
    plan is made: no twin module and nothing of agent.lab is loaded."""
    code = (
        "import sys\n"
        "from agent.engine.plan import plan\n"
        "from agent.inventory import load\n"
        "from agent.playbook import load as load_playbook\n"
        "from agent.platforms import registry\n"
        "import agent.run.executor\n"
        "inv = load('inventory/hospi-grand-ouest.yaml')\n"
        "pb = load_playbook('playbooks/isolate-site.yaml', inv)\n"
        "plan(pb, inv)\n"
        "loaded = [m for m in sys.modules if m.endswith('.twin') or m.startswith('agent.lab')]\n"
        "print(sorted(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_each_built_in_platform_has_its_twin_in_its_folder() -> None:
    for name in [*registry.names(), *registry.methods()]:
        module = registry.twin(name)
        assert module is not None, name
        spec = registry.shared(name) or registry.platform(name)
        folder = spec.driver.__module__  # the folder that registers it (juniper_srx: Junos's)
        assert folder == f"agent.platforms.{folder.split('.')[2]}", folder
        assert module.__name__ == f"{folder}.twin"
        assert callable(module.start)
