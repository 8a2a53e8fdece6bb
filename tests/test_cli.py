"""The `cordon` command line: clear errors with exit codes, JSON for scripts, and the lab
commands driving the real twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from scripts.synth import hospi_grand_ouest
from tests.conftest import EXAMPLE, ROOT, require_root


def cordon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def test_inventory_check_valid() -> None:
    """A valid inventory is reported with its counts and exit code 0."""
    done = cordon("inventory", "check", str(EXAMPLE), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert data["sites"] == 13
    assert data["flows"] == 135


def test_inventory_check_invalid_exit_code_and_location(tmp_path: Path) -> None:
    """An invalid inventory exits 2 and names file, path, line and cause on stderr."""
    doc = hospi_grand_ouest()
    doc["sites"][1]["zones"][0]["hosts"][0]["address"] = "198.18.99.10"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = cordon("inventory", "check", str(path))
    assert done.returncode == 2
    assert f"{path}:" in done.stderr
    assert "sites[1].zones[0].hosts[0].address" in done.stderr
    assert "outside the zone subnet" in done.stderr
    assert done.stdout == ""


def test_inventory_check_json_lists_issues(tmp_path: Path) -> None:
    """With --json an invalid inventory gives a machine-readable list of issues."""
    path = tmp_path / "bad.yaml"
    path.write_text("group: {name: x}\nsites: []\nfloes: []\n")
    done = cordon("inventory", "check", str(path), "--json")
    assert done.returncode == 2
    issues = json.loads(done.stdout)["issues"]
    assert {"path": "floes", "line": 3} in [{k: i[k] for k in ("path", "line")} for i in issues]


def test_inventory_show_json_has_no_secret_values() -> None:
    """`inventory show --json` carries references, never a secret value."""
    done = cordon("inventory", "show", str(EXAMPLE), "--json")
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["group"]["defaults"]["snmp"]["priv"] == "file:.secrets/snmp/priv"


def test_lab_flows_when_down_says_so(tmp_path: Path) -> None:
    """`lab flows` without a twin explains what to do, with the twin exit code."""
    env = {"CORDON_LAB_STATE": str(tmp_path)}  # a lab state root where no twin is up
    done = cordon("lab", "status", "--json", env=env)
    assert json.loads(done.stdout)["up"] is False
    done = cordon("lab", "flows", env=env)
    assert done.returncode == 9
    assert "cordon lab up" in done.stderr


def test_lab_refuses_non_sandbox_inventory(tmp_path: Path) -> None:
    """`lab up` refuses an inventory outside 198.18.0.0/15 before touching anything."""
    require_root()
    doc = hospi_grand_ouest()
    text = yaml.safe_dump(doc, sort_keys=False).replace("198.18.", "10.18.")
    path = tmp_path / "prod.yaml"
    path.write_text(text)
    before = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    done = cordon("lab", "up", "-i", str(path))
    assert done.returncode == 10, done.stderr
    assert "only builds networks inside 198.18.0.0/15" in done.stderr
    after = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert before == after
    assert not (tmp_path / ".secrets").exists()


def python(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`script` run by a fresh interpreter in the checkout (`env`: added to the environment)."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def test_a_command_loads_only_what_it_uses() -> None:
    """`cordon run` imports its own command's module, not the demo, the drills, the crisis-cell
    view, the twin, the audit report, nor rich (#18); `cordon --help` still lists every
    command."""
    script = (
        "import json, sys\n"
        "sys.argv = ['cordon', 'run', '--help']\n"
        "from agent.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(json.dumps([m for m, v in sys.modules.items() if v is not None]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stderr))
    assert "agent.cli.commands.run" in imported
    unused = {
        "agent.cli.commands.demo",
        "agent.cli.commands.drill",
        "agent.drill",
        "agent.view",
        "agent.lab.build",
        "agent.audit.report",
        "rich",
        "httpx._main",
    }
    assert not imported & unused
    listed = cordon("--help")
    assert listed.returncode == 0
    for name in ("demo", "drill", "lab", "run", "show", "audit", "incident", "probe"):
        assert f"  {name} " in listed.stdout


def test_cordon_does_not_search_for_pydantic_plugins() -> None:
    """`cordon` creates its models without pydantic's plugin search (the metadata of every
    installed distribution, read at the first model: #18): no entry point of the `pydantic`
    group is looked up, unless PYDANTIC_DISABLE_PLUGINS is set otherwise by whoever runs it."""
    script = (
        "import importlib.metadata as md, json, os, sys\n"
        "groups = []\n"
        "real = md.entry_points\n"
        "def entry_points(**kw):\n"
        "    groups.append(kw.get('group'))\n"
        "    return real(**kw)\n"
        "md.entry_points = entry_points\n"
        "sys.argv = ['cordon', 'run', '--help']\n"
        "from agent.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "import agent.inventory.models\n"
        "sys.stderr.write(json.dumps([groups, os.environ.get('PYDANTIC_DISABLE_PLUGINS')]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    groups, switch = json.loads(done.stderr)
    assert "pydantic" not in groups
    assert switch == "__all__"
    chosen = python(script, PYDANTIC_DISABLE_PLUGINS="logfire")  # one plugin off: others looked up
    assert chosen.returncode == 0, chosen.stderr
    groups, switch = json.loads(chosen.stderr)
    assert "pydantic" in groups
    assert switch == "logfire"
    empty = python(script, PYDANTIC_DISABLE_PLUGINS="")  # empty counts as unset, as every setting
    assert empty.returncode == 0, empty.stderr
    groups, switch = json.loads(empty.stderr)
    assert "pydantic" not in groups
    assert switch == "__all__"


def test_cordon_collects_garbage_again_after_its_imports() -> None:
    """`cordon` loads its modules with the garbage collector off and freezes them (no later
    collection walks them, #18), then turns the collector on again: a long-lived process (the
    daemon) keeps collecting what it makes; a caller that had it off keeps it off."""
    script = (
        "import gc, json, sys\n"
        "from agent.cli import loading, main\n"
        "sys.argv = ['cordon', 'run', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "after = [gc.isenabled(), gc.get_freeze_count()]\n"
        "gc.disable()\n"
        "with loading():\n"
        "    import agent.service.service\n"
        "sys.stderr.write(json.dumps([*after, gc.isenabled()]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    enabled, frozen, enabled_off = json.loads(done.stderr)
    assert enabled
    assert frozen > 10_000  # the modules' objects, out of every collection's walk
    assert not enabled_off


def test_a_local_run_off_the_twin_loads_no_twin_module(tmp_path: Path) -> None:
    """With no twin of its inventory up, what `--local` and the daemon add for the twin (the
    twin's flow source) reads the twin's state file and nothing more: the twin's builder,
    topology and prober stay unloaded (#16, #18)."""
    script = (
        "import json, sys\n"
        "import agent.platforms.registry\n"
        "from agent.inventory import load\n"
        "from agent.lab.verifier import twin_source\n"
        f"source = twin_source(load({str(EXAMPLE)!r}))\n"
        "sys.stderr.write(json.dumps([source is None, sorted(sys.modules)]))\n"
    )
    done = python(script, CORDON_LAB_STATE=str(tmp_path / "no-twin"))
    assert done.returncode == 0, done.stderr
    none, imported = json.loads(done.stderr)
    assert none
    assert "agent.lab.state" in imported
    assert not {"agent.lab.build", "agent.lab.flows", "agent.lab.topology"} & set(imported)


def test_a_local_run_on_the_twin_builds_its_source_at_a_first_flow_check(tmp_path: Path) -> None:
    """With a twin of its inventory up, `--local` (a one-shot) gets the twin's flow source
    deferred: its blueprint and prober are made when a flow is first checked, not before the
    first device (#18); the daemon's (`deferred` off) is made at once."""
    lab = tmp_path / "lab" / "cdn"
    lab.mkdir(parents=True)
    state = {"lab": "cdn", "inventory": str(EXAMPLE), "phase": "up"}
    (lab / "state.json").write_text(json.dumps(state))
    script = (
        "import json, sys\n"
        "import agent.platforms.registry\n"
        "from agent.inventory import load\n"
        "from agent.lab.verifier import twin_source\n"
        f"inv = load({str(EXAMPLE)!r})\n"
        "twin = twin_source(inv, deferred=True)\n"
        "deferred = [twin.name, twin.made, 'agent.lab.topology' in sys.modules]\n"
        "now = twin_source(inv)\n"
        "eager = [now.name, type(now).__name__, 'agent.lab.topology' in sys.modules]\n"
        "sys.stderr.write(json.dumps([deferred, eager]))\n"
    )
    done = python(script, CORDON_LAB_STATE=str(tmp_path / "lab"))
    assert done.returncode == 0, done.stderr
    deferred, eager = json.loads(done.stderr)
    assert deferred == ["twin", False, False]
    assert eager == ["twin", "TwinSource", True]


def test_a_roles_file_without_certificates_loads_no_x509(tmp_path: Path) -> None:
    """Reading a roles file that lists no client certificate (every `--local` command) loads
    neither `agent.mtls` nor cryptography's x509 (#18); one that lists a certificate still has
    it read and pinned."""
    roles = tmp_path / "roles.yaml"
    roles.write_text("oncall: []\noperator: [bob]\nauditor: []\nroot_is: operator\n")
    roles.chmod(0o600)
    listed = tmp_path / "listed.yaml"
    listed.write_text("operator: [bob]\ncertificates:\n  bob: bob.pem\n")
    listed.chmod(0o600)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from agent.api.auth import Policy\n"
        "from agent.errors import ConfigError\n"
        f"Policy.load(Path({str(roles)!r}))\n"
        "before = sorted(m for m in sys.modules if m == 'agent.mtls' or 'x509' in m)\n"
        "try:\n"
        f"    Policy.load(Path({str(listed)!r}))\n"
        "    said = ''\n"
        "except ConfigError as exc:\n"
        "    said = exc.message\n"
        "sys.stderr.write(json.dumps([before, 'agent.mtls' in sys.modules, said]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    before, after, said = json.loads(done.stderr)
    assert before == []
    assert after  # the listed certificate was read (it does not exist: said so)
    assert "bob.pem" in said


def test_cordon_opens_ssh_sessions_without_invoke() -> None:
    """paramiko imports invoke (and unittest.mock) for OpenSSH `Match exec` configs, which
    Cordon never reads: while a `cordon` command runs, paramiko and netmiko load without it
    (#16, #18)."""
    script = (
        "import json, sys\n"
        "import agent.cli.app\n"
        "def command():\n"
        "    import paramiko, netmiko\n"
        "    loaded = sys.modules.get('invoke') is not None\n"
        "    sys.stderr.write(json.dumps([loaded, paramiko.Transport.__name__]))\n"
        "agent.cli.app.main = command\n"
        "from agent.cli import main\n"
        "main()\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr) == [False, "Transport"]


def test_a_platform_loads_only_when_its_devices_are_used(tmp_path: Path) -> None:
    """Importing the registry knows every platform by its registration alone: planning for an
    inventory of Linux firewalls and IOS switches loads their renderers as the plan uses them,
    and no module of a platform the inventory does not use (#18)."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(hospi_grand_ouest(mixed=False), sort_keys=False))
    script = (
        "import json, sys\n"
        "import agent.platforms.registry\n"
        "sys.argv = ['cordon', 'plan', 'preventive-degraded', '--local', '--json',\n"
        f"            '-i', {str(inventory)!r}, '--state-dir', {str(tmp_path / 'state')!r}]\n"
        "from agent.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "sys.stderr.write(json.dumps([m for m, v in sys.modules.items() if v is not None]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]
    imported = set(json.loads(done.stderr))
    assert "agent.platforms.linux_nftables.render" in imported  # the plan rendered its rules
    unused = ("aruba_aoscx", "cisco_iosxe", "fortigate", "juniper_junos", "stormshield")
    loaded = {m for m in imported for p in unused if m.startswith(f"agent.platforms.{p}.")}
    assert not loaded


def test_a_local_run_creates_only_the_wire_models_it_uses(tmp_path: Path) -> None:
    """`cordon run --local`'s modules and a `cordon plan --local` (the same path: the API in
    this process, the service, the renderers) create the wire models of planning and running
    only: not those of status, health, run lists (agent.wire.reports) nor of the orders on a
    started run or an incident (agent.wire.steering), ~23 pydantic classes (#18); each is still
    there for the command that uses it."""
    script = (
        "import json, sys\n"
        "import pydantic\n"
        "import agent.cli.commands.run\n"
        "sys.argv = ['cordon', 'plan', 'preventive-degraded', '--local', '--json',\n"
        f"            '-i', {str(EXAMPLE)!r}, '--state-dir', {str(tmp_path / 'state')!r}]\n"
        "from agent.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "def every(cls):\n"
        "    for sub in cls.__subclasses__():\n"
        "        yield sub\n"
        "        yield from every(sub)\n"
        "made = sorted({c.__name__ for c in every(pydantic.BaseModel)\n"
        "               if c.__module__.startswith('agent.wire')})\n"
        "sys.stderr.write(json.dumps([made, sorted(sys.modules)]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]
    made, imported = json.loads(done.stderr)
    assert {"PlanRequest", "PlanOut", "RunRequest", "RunStarted", "RunView"} <= set(made)
    others = {"StatusOut", "Health", "RunsOut", "RunsQuery", "AuditReportQuery", "ClusterInfo"}
    others |= {"ApproveRequest", "Approved", "RollbackOut", "AttestRequest", "IncidentOut"}
    assert not others & set(made)
    assert not {"agent.wire.reports", "agent.wire.steering"} & set(imported)
    status = cordon(
        "status", "--local", "--json", "-i", str(EXAMPLE), "--state-dir", str(tmp_path / "state")
    )
    assert status.returncode == 0, status.stderr
    assert "sites" in json.loads(status.stdout)


def test_a_local_run_loads_no_job_store(tmp_path: Path) -> None:
    """A run started in this process (`cordon run --local`: no scheduler, the CLI drives it)
    is journaled without APScheduler's SQLAlchemy job store: neither SQLAlchemy nor APScheduler
    loads (#18); the daemon's scheduler still keeps its persistent store
    (tests/daemon/test_jobstore_upgrade.py)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import agent.platforms.registry\n"
        "from agent import audit\n"
        "from agent.service.service import local\n"
        f"audit.configure(Path({str(tmp_path / 'logs')!r}), console=False)\n"
        f"with local(Path({str(EXAMPLE)!r}), Path({str(tmp_path / 'state')!r})) as svc:\n"
        "    kw = dict(playbook='preventive-degraded', sites=['rennes-la-sagesse'])\n"
        "    plan = svc.plan(None, **kw)\n"
        "    assert plan['changes'], plan\n"
        "    started = svc.start_run(None, **kw, digest=plan['digest'], reason='test',\n"
        "                            attest=None, soak_seconds=None, decision=None)\n"
        "    run = svc.show_run(None, run_id=started['run_id'])\n"
        "audit.close()\n"
        "sys.stderr.write(json.dumps([run['status'], sorted(sys.modules)]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    status, imported = json.loads(done.stderr)
    assert status == "running"  # journaled, open: this process would drive it now
    assert not {m for m in imported if m.split(".")[0] in ("sqlalchemy", "apscheduler")}


def test_the_local_stack_loads_mtls_without_x509() -> None:
    """What `cordon --local` loads (the service, the daemon's start-up helpers, the flow
    sources with the probe channel) takes `agent.mtls` but not cryptography's x509: only
    reading or making a certificate loads it (#18: ~15-27 ms of every cold command)."""
    script = (
        "import json, sys\n"
        "import agent.service.service, agent.daemon.main, agent.api.local, agent.verify.sources\n"
        "import agent.probe.channel\n"
        "before = [m for m in sys.modules if m.startswith('cryptography.x509')]\n"
        "from agent import mtls\n"
        "mtls.certificate_pin\n"
        "sys.stderr.write(json.dumps(['agent.mtls' in sys.modules, before]))\n"
    )
    done = python(script)
    assert done.returncode == 0, done.stderr
    has_mtls, x509 = json.loads(done.stderr)
    assert has_mtls and x509 == []


def test_every_registered_function_resolves() -> None:
    """Each renderer and parser a registration names lazily is a function of its module, so a
    platform's first use cannot fail on a misspelt name (#18)."""
    from agent.platforms import registry  # noqa: PLC0415
    from agent.platforms.lazy import Deferred  # noqa: PLC0415

    specs = [registry.platform(n) for n in registry.names()]
    specs += [s for s in map(registry.shared, registry.methods()) if s is not None]
    found = [
        f
        for s in specs
        for f in (s.shut_lines, s.config_lines, *(vars(s.rules).values() if s.rules else ()))
        if isinstance(f, Deferred)
    ]
    assert len(found) > 30
    for f in found:
        module = sys.modules.get(f.module) or __import__(f.module, fromlist=[f.name])
        assert callable(getattr(module, f.name)), f
