"""Fixtures for the crisis-cell view: the daemon API tests' roles, tokens, audit log and real
service (tests/daemon/conftest.py), the view served on a free loopback port from a background
thread, and a real headless Chromium (Debian's `chromium` and `chromium-driver`) driven by
Selenium. Screenshots go under the suite's log directory ($CORDON_LOG_DIR/view-screenshots)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.api.auth import Policy
from agent.service.service import Service
from agent.view import make_view_app, start_view
from tests.conftest import in_ci
from tests.daemon import conftest as daemon_fixtures

# the daemon API tests' fixtures, by name: roles, tokens, audit log, the real service
audit_log = daemon_fixtures.audit_log
tokens = daemon_fixtures.tokens
roles_file = daemon_fixtures.roles_file
policy = daemon_fixtures.policy
workdir = daemon_fixtures.workdir
service = daemon_fixtures.service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ViewServer:
    """`make_view_app` + `start_view` on 127.0.0.1, its loop in a background thread."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await start_view(self.app, "127.0.0.1", self.port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()  # as the daemon does: open streams must end at once

    def __enter__(self) -> ViewServer:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the view server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the view did not stop: a stream held it open"


@pytest.fixture
def view(service: Service, policy: Policy) -> Iterator[ViewServer]:
    """The view over the real service (no device reachable), pushing every 0.2 s."""
    port = free_port()
    app = make_view_app(service, policy, interval=0.2, listen=("127.0.0.1", port))
    with ViewServer(app, port) as srv:
        yield srv


def require_chromium() -> None:
    """No browser: a skip on a developer's machine, a failure in CI."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if not missing:
        return
    why = (
        f"SKIPPED BROWSER TEST: {', '.join(missing)} missing "
        "(Debian's chromium and chromium-driver: scripts/install-system-deps.sh)"
    )
    if in_ci():
        pytest.fail(why.replace("SKIPPED BROWSER TEST", "browser tests must run in CI"))
    pytest.skip(why)


def make_browser() -> Any:
    from selenium import webdriver  # noqa: PLC0415 - only where a browser is used
    from selenium.webdriver.chrome.service import Service as DriverService  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1920,1080",
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module; cookies are cleared by each test that needs it."""
    require_chromium()
    driver = make_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the screenshots go: the suite's log directory, kept as CI artifacts."""
    out = Path(os.environ["CORDON_LOG_DIR"]) / "view-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


def shoot(driver: Any, where: Path, name: str) -> Path:
    path = where / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    print(f"screenshot: {path}")  # the artifact's path, in the test's output
    return path
