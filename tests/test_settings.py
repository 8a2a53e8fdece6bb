"""`agent.settings` is the one reader of the environment: every `CORDON_*` variable is validated
there at load, refused with its name when bad, and read by the modules its entry names."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from agent import settings
from agent.drivers.pool import Pool
from agent.engine.journal import Journal
from agent.errors import ConfigError
from agent.inventory import load
from agent.run.executor import Executor
from tests.conftest import EXAMPLE
from tests.engine.fakes import World
from tests.pgserver import Where

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"
# Reading the environment elsewhere is allowed only here, for what is not a setting:
NOT_SETTINGS = {
    "agent/settings.py": "the settings themselves",
    "agent/secrets.py": "`env:NAME` secret references (secrets, not settings)",
    "agent/lab/clifront.py": "SSH_ORIGINAL_COMMAND, set by the twin's sshd for its CLI front",
    "agent/platforms/cisco_iosxe/twin_cli.py": "SSH_ORIGINAL_COMMAND and USER, set by the twin's "
    "sshd for the emulated switch's CLI (a ForceCommand)",
    "agent/platforms/aruba_aoscx/twin_cli.py": "SSH_ORIGINAL_COMMAND, set by the twin's sshd for "
    "the emulated switch's CLI (a ForceCommand)",
}
# properties of `Settings` computed from a field
DERIVED = {"journal_path": "state_dir", "health_path": "state_dir", "socket_path": "state_dir"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(AGENT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
    return out


def _environment_reads(tree: ast.Module) -> list[tuple[int, str]]:
    """Every place `tree` touches the process environment: os.environ, os.getenv, environ
    imported by name, os.environb, and click's `envvar=` (click reads the variable)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv"):
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Name) and node.id in ("environ", "environb", "getenv"):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.keyword) and node.arg in ("envvar", "auto_envvar_prefix"):
            found.append((node.value.lineno, f"{node.arg}={ast.unparse(node.value)}"))
    return found


def test_no_module_but_settings_reads_the_environment() -> None:
    """An AST scan of agent/: no other module reads os.environ, os.getenv or a click envvar."""
    offenders = []
    for path in sorted(AGENT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in NOT_SETTINGS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{rel}:{line}: {what}" for line, what in _environment_reads(tree)]
    assert offenders == [], "read the environment through agent.settings:\n" + "\n".join(offenders)


def test_the_scan_sees_an_environment_read() -> None:
    """The scan above is not blind: it finds each way of reading the environment."""
    tree = ast.parse(
        "import os\nfrom os import environ\nimport click\n"
        "a = os.environ.get('CORDON_X')\nb = os.getenv('CORDON_Y')\nc = environ['CORDON_Z']\n"
        "d = click.option('--x', envvar='CORDON_W')\n"
    )
    assert sorted(line for line, _ in _environment_reads(tree)) == [4, 5, 6, 7]


def _settings_reads(tree: ast.Module) -> set[str]:
    """The `Settings` attributes `tree` reads, on `settings.current()` or a name bound to it."""

    def is_current(node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "current"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "settings"
        )

    bound = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_current(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    reads = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
            is_current(node.value) or (isinstance(node.value, ast.Name) and node.value.id in bound)
        ):
            reads.add(DERIVED.get(node.attr, node.attr))
    return reads


def test_every_setting_is_read_where_its_entry_says() -> None:
    """No setting is validated and then ignored: each is read by every module its entry names."""
    modules = _modules()
    unread = []
    for s in settings.SETTINGS:
        assert s.readers, f"{s.env} names no reader"
        for reader in s.readers:
            assert reader in modules, f"{s.env}: no module {reader}"
            if s.attr not in _settings_reads(modules[reader]):
                unread.append(f"{s.env} ({s.attr}) is not read by {reader}")
    assert unread == []


def test_every_settings_field_has_one_documented_variable() -> None:
    """Each field of `Settings` is filled by exactly one documented CORDON_ variable."""
    names = [s.attr for s in settings.SETTINGS]
    assert sorted(names) == sorted(f.name for f in fields(settings.Settings))
    assert all(s.env.startswith("CORDON_") and s.meaning and s.default for s in settings.SETTINGS)
    assert len({s.env for s in settings.SETTINGS}) == len(settings.SETTINGS)


@pytest.mark.parametrize(
    "setting",
    [s for s in settings.SETTINGS if s.kind in ("seconds", "mib")],
    ids=lambda s: s.env,
)
@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_a_bad_number_is_refused_naming_the_variable(setting: settings.Setting, raw: str) -> None:
    """A value that is not a number in range raises its owner's error naming the variable."""
    with pytest.raises(setting.error) as info:
        settings.load({setting.env: raw})
    assert setting.env in info.value.message
    assert info.value.hint and "unset it" in info.value.hint


def test_values_land_in_their_fields_and_empty_means_unset() -> None:
    """Values are parsed into their fields; an empty variable keeps the default."""
    s = settings.load(
        {"CORDON_STATE_DIR": "/srv/cordon", "CORDON_STOP_WAIT_S": "5", "CORDON_INVENTORY": ""}
    )
    assert s.journal_path == Path("/srv/cordon/journal.sqlite")
    assert s.stop_wait_s == 5.0
    assert s.inventory == Path("inventory/hospi-grand-ouest.yaml")


def test_the_token_is_never_shown() -> None:
    """The bearer token taken from CORDON_TOKEN is not in the settings' repr."""
    s = settings.load({"CORDON_TOKEN": "tok-0123456789abcdef"})
    assert s.token == "tok-0123456789abcdef"
    assert "tok-0123456789abcdef" not in repr(s)


def test_current_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`current()` reflects the environment it is called in (loaded once per environment)."""
    monkeypatch.setenv("CORDON_STATE_DIR", "/tmp/one")
    assert settings.current().state_dir == Path("/tmp/one")
    monkeypatch.setenv("CORDON_STATE_DIR", "/tmp/two")
    assert settings.current().state_dir == Path("/tmp/two")


def test_a_bad_engine_setting_stops_the_executor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_where: Where
) -> None:
    """CORDON_AUDIT_MIN_FREE_MB=-5 is refused, not silently replaced by the default."""
    monkeypatch.setenv("CORDON_AUDIT_MIN_FREE_MB", "-5")
    inv = load(EXAMPLE)
    journal = Journal(state_where("journal"))
    try:
        with (
            Pool(inv, keepalive=None, factory=World().factory) as pool,
            pytest.raises(ConfigError, match="CORDON_AUDIT_MIN_FREE_MB"),
        ):
            Executor(inv, journal, pool, actor="t")
    finally:
        journal.close()


def test_a_bad_setting_fails_any_command_before_it_runs(tmp_path: Path) -> None:
    """`cordon inventory check` with CORDON_STOP_WAIT_S=soon: exit 2 naming it, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", "inventory", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "CORDON_STOP_WAIT_S": "soon",
            "CORDON_LOG_DIR": str(tmp_path),
        },
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "CORDON_STOP_WAIT_S='soon' is not a number of seconds" in done.stderr
    assert "Traceback" not in done.stderr
