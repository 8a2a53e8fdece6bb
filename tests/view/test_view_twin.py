"""The crisis-cell view of the real `cordon daemon` on the twin: the daemon started with
`CORDON_VIEW_LISTEN`, the page open in headless Chromium, bob isolates a site with the real CLI
(`cordon run isolate-site`), and the page shows that site isolated without being reloaded.

One test (the twin is shared and locked): afterwards the run is rolled back, the daemon stopped
by PID and every flow of the twin open again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Twin
from tests.daemon.on_twin import on_the_twin
from tests.daemon.test_daemon_cli import Stack
from tests.view.conftest import free_port, make_browser, require_chromium, shoot
from tests.view.test_view import tiles, wait_for

pytestmark = pytest.mark.twin

SITE = "fontenay-sud-vendee"


class ViewStack(Stack):
    """The daemon tests' stack, its daemon serving the view on a free loopback port."""

    port: int = 0

    def env(self, user: str | None = None) -> dict[str, str]:
        env = super().env(user)
        env["CORDON_VIEW_LISTEN"] = f"127.0.0.1:{self.port}"
        return env


@pytest.fixture
def stack(twin: Twin, tmp_path: Path) -> Iterator[ViewStack]:
    require_chromium()
    s = ViewStack(tmp_path, isolate_net=False)  # the twin's addresses through its own veth
    s.port = free_port()
    with on_the_twin(s, twin):
        yield s


def test_a_site_isolated_on_the_twin_turns_isolated_on_the_page(
    stack: ViewStack, screenshots: Path
) -> None:
    browser: Any = make_browser()
    try:
        url = f"http://127.0.0.1:{stack.port}"
        browser.get(f"{url}/view")
        assert "refused (401)" in browser.title  # no token: refused by the real daemon
        browser.get(f"{url}/view?token={stack.tokens['dave']}")
        assert browser.current_url == f"{url}/view"
        before = tiles(browser)
        assert before[SITE][0] == "normal"
        shoot(browser, screenshots, "twin-before")
        browser.execute_script("window.__sameDocument = 'yes';")
        wait_for(browser, lambda d: d.find_element("id", "live").text == "live")

        done = stack.cordon(
            "run", "isolate-site", "-s", SITE, "--yes", "--json", user="bob", timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr

        wait_for(browser, lambda d: tiles(d)[SITE][0] == "isolated", timeout=30)
        after = tiles(browser)
        assert "mode-isolated" in after[SITE][1].split()
        assert after[SITE][2] != before[SITE][2]  # painted in another colour
        others = {s: m for s, (m, _, _) in after.items() if s != SITE}
        assert others == {s: m for s, (m, _, _) in before.items() if s != SITE}
        assert browser.execute_script("return window.__sameDocument;") == "yes", "page reloaded"
        status = stack.ok_json("status", user="dave")
        assert {s["site"]: s["mode"] for s in status["sites"]}[SITE] == "isolated"
        shoot(browser, screenshots, "twin-isolated")
    finally:
        browser.quit()
