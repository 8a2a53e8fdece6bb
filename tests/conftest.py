"""Suite-wide fixtures: the digital twin of the example group (one per session, under an exclusive
lock so concurrent runs never fight over it), and the scan of every test report and log file for
the twin's secrets."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.inventory import load
from agent.inventory.models import Inventory
from agent.lab import build, flows
from agent.lab.probe import ProbeStats, ProbeTarget
from agent.lab.state import LabState
from agent.lab.topology import Blueprint, blueprint
from tests import pgserver, secret_scan
from tests.pgserver import (  # noqa: F401 - state backends
    _pass_server,
    _stores_on_postgresql,
    pg_server,
    state_backend,
    state_where,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventory" / "hospi-grand-ouest.yaml"

# Every secret the twin generated this session; reports and logs are scanned for them.
SECRETS: list[str] = []
LEAKS: list[str] = []

if "CORDON_LOG_DIR" not in os.environ:
    os.environ["CORDON_LOG_DIR"] = tempfile.mkdtemp(prefix="cordon-test-logs-")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_root() -> None:
    """Twin tests need root. In CI they must run: not being root there is a failure, not a skip."""
    if os.geteuid() == 0:
        return
    if in_ci():
        pytest.fail("twin tests must run in CI, and CI runs as root: this run is not root")
    pytest.skip(
        "SKIPPED TWIN TEST: needs root (network namespaces, real daemons); "
        "run the suite as root to prove real effects"
    )


@dataclass
class Twin:
    """The running twin of the example inventory and what tests need to drive it."""

    inv: Inventory
    bp: Blueprint
    state: LabState
    secrets: list[str] = field(default_factory=list, repr=False)  # never in a failure report


def _collect_secrets(files: list[str]) -> list[str]:
    out = []
    for f in files:
        path = Path(f)
        if path.is_file() and not path.name.endswith((".pub", "known_hosts")):
            out.append(path.read_text(encoding="utf-8").strip())
    return out


@contextlib.contextmanager
def own_twin(
    path: Path,
    *,
    lab: str = build.DEFAULT_LAB,
    env: Mapping[str, str] | None = None,
    during_build: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    check_free: bool = True,
) -> Iterator[Twin]:
    """The twin of the inventory at `path`, built (under the caller's `twin_lock`) and taken
    down at the end; its secrets join the suite's leak scan. `env` holds settings the twin's
    devices read at build time (set only while building); `during_build` wraps the build the
    same way for settings that are not environment variables (a twin's time scale)."""
    if check_free and LabState.load(lab) is not None:
        pytest.fail(f"a twin {lab!r} is already up on this machine: `cordon lab down` first")
    inv = load(path)
    with contextlib.ExitStack() as building:
        if env:
            building.enter_context(_environment(env))
        if during_build is not None:
            building.enter_context(during_build())
        state = build.up(inv, lab=lab)
    secrets = _collect_secrets(state.files)
    SECRETS.extend(secrets)
    try:
        yield Twin(inv=inv, bp=blueprint(inv, lab), state=state, secrets=secrets)
    finally:
        build.down(lab)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def matrix(twin: Twin, timeout: float = 1.5) -> dict[str, bool]:
    """Every declared flow of `twin`, probed with real TCP from its source namespace."""
    return {o.flow.name: o.observed_open for o in flows.observe(twin.inv, twin.bp, timeout=timeout)}


def must_survive(twin: Twin) -> list[ProbeTarget]:
    """The probe targets of `twin`'s must-survive flows."""
    return [t for f, t in flows.targets(twin.inv, twin.bp) if f.must_survive]


def assert_never_failed(stats: dict[ProbeTarget, ProbeStats], targets: list[ProbeTarget]) -> None:
    """Every must-survive flow was probed during the run, and no probe failed."""
    assert {t for t, s in stats.items() if s.sent} == set(targets)
    assert sum(s.failed for s in stats.values()) == 0, {
        str(k): s for k, s in stats.items() if s.failed
    }


@pytest.fixture(scope="session")
def twin_lock() -> Iterator[None]:
    """Exclusive use of the machine's twin for this session (waits for another holder)."""
    require_root()
    with build.exclusive(print):
        yield


@pytest.fixture(scope="session")
def twin(twin_lock: None) -> Iterator[Twin]:
    """The Hospi Grand Ouest twin, built once for the session and taken down at its end."""
    if LabState.load(build.DEFAULT_LAB) is not None:
        pytest.fail(
            "a twin is already up on this machine (from `cordon lab up` or a demo); "
            "the tests build their own: run `cordon lab down` first"
        )
    with own_twin(EXAMPLE, check_free=False) as built:
        yield built


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """No secret of the twin in any test's output, log capture or exception text."""
    if not SECRETS:
        return
    texts = [report.longreprtext or ""] + [content for _, content in report.sections]
    for text in texts:
        for hit in secret_scan.find(text, SECRETS):
            LEAKS.append(f"{report.nodeid} ({report.when}): {hit}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan every log line the suite wrote for the twin's secrets; a leak fails the run."""
    if not SECRETS:
        return
    log_dir = Path(os.environ["CORDON_LOG_DIR"])
    LEAKS.extend(secret_scan.scan_tree(log_dir, SECRETS))
    LEAKS.extend(secret_scan.scan_tree(ROOT / "logs", SECRETS))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if LEAKS:
        if reporter is not None:
            reporter.write_line("SECRET LEAK: the twin's secrets appear in:", red=True)
            for leak in LEAKS:
                reporter.write_line(f"  {leak}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(
            f"secret scan: {len(SECRETS)} twin secrets, searched in every test report and "
            f"every file under {log_dir}: none found"
        )


def builds_its_own_twin(item: pytest.Item) -> bool:
    """Marked `twin_lifecycle`, or it takes the twin lock without the session twin (a fixture of
    its own builds a twin: a platform's small group, a second group)."""
    names = getattr(item, "fixturenames", ())
    return bool(item.get_closest_marker("twin_lifecycle")) or (
        "twin_lock" in names and "twin" not in names
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that build and remove their own twin run before the session twin is built (one twin
    per machine: the session twin stays up from its first test to the end of the run). The sort
    is stable: a module's tests stay together, its module fixture builds its twin once."""
    items.sort(key=lambda item: 0 if builds_its_own_twin(item) else 1)
    pgserver.select_for_postgresql(config, items)


def pytest_addoption(parser: pytest.Parser) -> None:
    pgserver.add_option(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): a test that cannot apply to PostgreSQL (skipped under "
        "--state-backend=postgresql, with its reason)",
    )


@pytest.fixture(autouse=True)
def _pydantic_switch_restored() -> Iterator[None]:
    """A test calling `cordon`'s `main()` in-process sets PYDANTIC_DISABLE_PLUGINS
    (`settings.skip_pydantic_plugins`): restored after it, so no later test (nor the processes
    it starts from `os.environ`) depends on the order the tests ran in."""
    before = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    yield
    if before is None:
        os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
    else:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = before
