"""The crisis-cell view without the twin: the real service over the example inventory (no device
reachable), modes written into its journal, the page in a real headless Chromium.

The page must list every site with the journal's mode and its colour, change live without a
reload when a mode changes, refuse a visitor without a token (401) or with a wrong one (403),
refuse every method but GET (405), and audit each refusal as the API does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.api.auth import Caller, Role
from agent.errors import ConfigError
from agent.service.service import Service
from agent.status import SiteMode
from agent.view import listen_address
from agent.view.snapshot import MODES, build, mode_class
from tests.daemon.fakes import records
from tests.view.conftest import ViewServer, shoot

RENNES, NAZAIRE, NANTES = "rennes-la-sagesse", "saint-nazaire-estuaire", "nantes-jules-verne"
ZED = Caller("zed", 0, frozenset({Role.OPERATOR}), "token")


def http(
    url: str, *, method: str = "GET", token: str | None = None, body: bytes | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=body)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def set_modes(service: Service) -> dict[str, str]:
    """Rennes isolated (L3), Saint-Nazaire reconnecting, Nantes isolating; the rest untouched."""
    j = service.journal
    j.set_site(RENNES, SiteMode.ISOLATING, "L3", None, "zed")
    j.set_site(RENNES, SiteMode.ISOLATED, "L3", None, "zed")
    j.set_site(NAZAIRE, SiteMode.ISOLATED, "L2", None, "zed")
    j.set_site(NAZAIRE, SiteMode.RECONNECTING, "L2", None, "zed")
    j.set_site(NANTES, SiteMode.ISOLATING, "L2", None, "zed")
    return {RENNES: "isolated", NAZAIRE: "reconnecting", NANTES: "isolating"}


def tiles(driver: Any) -> dict[str, tuple[str, str, str]]:
    """site -> (mode text, class, background colour) as the browser renders them, read in one
    script (the board may be replaced by a push between two reads)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('.tile')).map(t => [t.dataset.site,"
        " t.querySelector('.mode').textContent, t.className,"
        " getComputedStyle(t).backgroundColor]);"
    )
    return {
        site: (mode.split("·")[0].strip().lower(), css, colour) for site, mode, css, colour in rows
    }


def texts(driver: Any, selector: str, attribute: str | None = None) -> list[str]:
    """The text (or `attribute`) of every element matching `selector`, read in one script: the
    board may be replaced by a push between two WebDriver reads."""
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(e => arguments[1] ? e.getAttribute(arguments[1]) : e.innerText);",
            selector,
            attribute,
        )
    )


def sign_in(driver: Any, view: ViewServer, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{view.url}/view?token={token}")
    assert driver.current_url == f"{view.url}/view", "the token must leave the address bar"


def wait_for(driver: Any, predicate: Any, timeout: float = 20) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate)


# -- in the browser ----------------------------------------------------------------------------


def test_every_site_with_its_mode_and_colour(
    view: ViewServer,
    service: Service,
    browser: Any,
    tokens: dict[str, str],
    screenshots: Path,
) -> None:
    expected_changed = set_modes(service)
    sign_in(browser, view, tokens["dave"])
    shown = tiles(browser)
    shoot(browser, screenshots, "every-site-with-its-mode")
    status = service.status(None)
    expected = {s["site"]: s["mode"] for s in status["sites"]}
    assert set(shown) == set(expected)
    establishments = {s.name for s in service.inv.sites if s.kind.value == "establishment"}
    assert establishments <= set(shown) and len(establishments) >= 9
    for site, mode in expected.items():
        text, css, _ = shown[site]
        assert text == mode, site
        assert f"mode-{mode}" in css.split(), (site, css)
    for site, mode in expected_changed.items():
        assert shown[site][0] == mode
    colours = {shown[s][0]: shown[s][2] for s in shown}
    # one colour per mode actually painted: isolated is not normal's, nor reconnecting's
    assert len({colours["normal"], colours["isolated"], colours["isolating"]}) == 3
    assert colours["isolated"] != colours["reconnecting"]


def test_a_mode_change_shows_without_a_reload(
    view: ViewServer,
    service: Service,
    browser: Any,
    tokens: dict[str, str],
    screenshots: Path,
) -> None:
    sign_in(browser, view, tokens["alice"])  # on call: may read status
    assert tiles(browser)[NANTES][0] == "normal"
    browser.execute_script("window.__sameDocument = 'yes';")
    wait_for(browser, lambda d: "live" in d.find_element("id", "live").text)
    service.journal.set_site(NANTES, SiteMode.ISOLATING, "L2", None, "zed")
    service.journal.set_site(NANTES, SiteMode.ISOLATED, "L2", None, "zed")
    wait_for(browser, lambda d: tiles(d)[NANTES][0] == "isolated")
    assert "mode-isolated" in tiles(browser)[NANTES][1].split()
    assert browser.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"
    shoot(browser, screenshots, "isolated-live")


def test_incident_clocks_count_down_for_a_role_that_may_read_the_report(
    view: ViewServer,
    service: Service,
    browser: Any,
    tokens: dict[str, str],
    screenshots: Path,
) -> None:

    service.incident(ZED, action="open", name="ransomware-rennes", site=RENNES, reason="drill")
    sign_in(browser, view, tokens["dave"])  # auditor: may read the audit report
    kinds = set(texts(browser, ".clock", "data-kind"))
    assert {"ars", "nis2_early_warning", "nis2_notification", "cnil"} <= kinds
    early = '.clock[data-kind="nis2_early_warning"] .left'
    (before,) = texts(browser, early)
    assert "left" in before  # the countdown, "23:59:58 left"
    wait_for(browser, lambda d: texts(d, early) != [before])
    ars = '.clock[data-kind="ars"]'
    # "without delay": due now until the notification is recorded, never OVERDUE from the start
    (due,) = texts(browser, ars)
    assert "DUE NOW" in due and "not yet notified" in due and "OVERDUE" not in due
    shoot(browser, screenshots, "clocks")
    service.notify(ZED, incident=None, kind="ars", to="ARS", ref="PSIG-7")
    wait_for(browser, lambda d: "NOTIFIED" in texts(d, ars)[0])  # live, without a reload
    (made,) = texts(browser, ars)
    assert "notified" in made and "to ARS" in made and "DUE NOW" not in made
    shoot(browser, screenshots, "clocks-ars-notified")
    sign_in(browser, view, tokens["alice"])  # on call: may not read the audit report
    (panel,) = texts(browser, "section.clocks")
    assert "not available" in panel and "may not read the audit report" in panel
    assert not texts(browser, ".clock")


def test_an_unauthenticated_visitor_is_refused(
    view: ViewServer, browser: Any, screenshots: Path, audit_log: Path
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    browser.delete_all_cookies()
    browser.get(f"{view.url}/view")
    assert "refused (401)" in browser.title
    assert "not signed in" in browser.find_element(By.ID, "refusal").text
    assert not browser.find_elements(By.CSS_SELECTOR, ".tile")
    shoot(browser, screenshots, "refused")
    refused = [r for r in records(audit_log, "access.refused") if r.get("action") == "view"]
    assert refused and refused[-1]["actor"] is None


def test_refusals_over_http(view: ViewServer, tokens: dict[str, str], audit_log: Path) -> None:
    for path in ("/view", "/view/state", "/view/events"):
        code, body = http(view.url + path)
        assert code == 401, path
        assert "tile" not in body
    code, body = http(view.url + "/view/state", token="not-a-token-of-anyone-at-all")
    assert code == 403
    assert "the bearer token presented to the view matches no operator" in body
    code, _ = http(view.url + "/view?token=" + tokens["erin"])  # listed under no one
    assert code == 403
    code, body = http(view.url + "/view/state", token=tokens["dave"])
    assert code == 200 and json.loads(body)["sites"]
    refused = records(audit_log, "access.refused")
    assert sum(r.get("action") == "view" for r in refused) == 5
    assert {r.get("remote") for r in refused} == {"127.0.0.1"}
    logged = "".join(p.read_text() for p in audit_log.glob("audit-*.jsonl"))
    assert tokens["erin"] not in logged and tokens["dave"] not in logged


def test_nothing_can_be_done_from_the_view(
    view: ViewServer, service: Service, tokens: dict[str, str], audit_log: Path
) -> None:
    before = service.status(None)
    body = json.dumps({"playbook": "isolate-site", "sites": [RENNES], "digest": "x"}).encode()
    for method, path in (
        ("POST", "/view"),
        ("POST", "/view/events"),
        ("PUT", "/view/state"),
        ("DELETE", "/view"),
        ("POST", "/v1/runs"),
        ("POST", "/v1/incidents"),
    ):
        code, text = http(view.url + path, method=method, token=tokens["bob"], body=body)
        assert code == 405, (method, path, code)
        assert "read-only" in text
    assert service.status(None) == before
    assert service.journal.runs(limit=10) == []
    refused = records(audit_log, "access.refused")
    assert sum(r["action"].startswith(("POST ", "PUT ", "DELETE ")) for r in refused) == 6


def test_a_foreign_host_header_is_refused(view: ViewServer, tokens: dict[str, str]) -> None:
    """A page of another site whose name was rebound to 127.0.0.1 cannot read the view."""
    req = urllib.request.Request(view.url + "/view/state")
    req.add_header("Authorization", f"Bearer {tokens['dave']}")
    req.add_header("Host", f"evil.example:{view.port}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403


# -- pure --------------------------------------------------------------------------------------


def test_listen_address() -> None:
    assert listen_address("") is None
    assert listen_address("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert listen_address("[::1]:9000") == ("::1", 9000)
    for bad in ("0.0.0.0:8443", "10.1.2.3:80", "localhost:80", "127.0.0.1", "127.0.0.1:0"):
        with pytest.raises(ConfigError) as err:
            listen_address(bad)
        assert "CORDON_VIEW_LISTEN" in err.value.message


def test_sections_the_daemon_does_not_give_say_not_available() -> None:
    status: dict[str, Any] = {
        "sites": [{"site": "a", "mode": "isolated"}, {"site": "b", "mode": "melted"}],
        "incidents": [{"incident_id": "I-1", "name": "x"}],
    }
    d = build(status, None, reports_note="role", now=0.0)
    assert d["flows"] is None and d["flows_note"]
    assert d["incidents"][0]["clocks"] is None and d["reports_note"] == "role"
    assert [s["css"] for s in d["sites"]] == ["mode-isolated", "mode-unknown"]
    with_flows = build(
        {**status, "flows": [{"flow": "f", "status": "failed"}, {"flow": "g"}]}, {}, now=0.0
    )
    assert [(f["status"], f["css"]) for f in with_flows["flows"]] == [
        ("failed", "flow-bad"),
        ("unverified", "flow-unknown"),
    ]
    assert all(mode_class(m) == f"mode-{m}" for m in MODES)
    assert set(MODES) == {m.value for m in SiteMode}


def test_a_run_waiting_for_approval_shows_what_it_waits_for(
    view: ViewServer, service: Service, browser: Any, tokens: dict[str, str], screenshots: Path
) -> None:

    from agent.api.auth import Action, authorize  # noqa: PLC0415

    plan = service.plan(ZED, playbook="hold", sites=[NANTES])
    decision = authorize(ZED, Action.RUN, playbook_approval="two_person")
    assert decision.needs_approval
    run = service.start_run(
        ZED,
        playbook="hold",
        sites=[NANTES],
        digest=plan["digest"],
        reason=None,
        attest=None,
        soak_seconds=None,
        decision=decision,
    )
    sign_in(browser, view, tokens["dave"])
    (box,) = texts(browser, f"#run-{run['run_id']}")
    assert "hold" in box and "awaiting_approval" in box and NANTES in box
    assert "waits for: a second operator's approval" in box
    shoot(browser, screenshots, "run-awaiting-approval")


def test_open_gates_say_what_a_run_waits_for() -> None:
    show = {
        "gates": [
            {"site": "a", "step": "soak", "status": "open", "detail": {"kind": "soak", "until": 9}},
            {"site": "a", "step": "attest", "status": "open", "detail": {"missing": ["icu"]}},
            {
                "site": "a",
                "step": "old",
                "status": "passed",
                "detail": {"kind": "soak", "until": 1},
            },
        ]
    }
    status = {"open_runs": [{"run_id": "R1", "steps_total": 4, "steps_done": 1}]}
    (run,) = build(status, {}, runs={"R1": show}, now=0.0)["runs"]
    assert run["percent"] == 25
    assert run["gates"] == [
        {"kind": "soak", "where": "a soak", "until": 9},
        {"kind": "attestation", "where": "a attest", "missing": ["icu"]},
    ]


def test_a_state_the_daemon_cannot_read_is_shown_as_such(
    view: ViewServer,
    service: Service,
    browser: Any,
    tokens: dict[str, str],
    screenshots: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal cannot be read: the badge says so in red, never "live" over a stale board."""
    from agent.errors import DaemonError  # noqa: PLC0415

    sign_in(browser, view, tokens["dave"])
    wait_for(browser, lambda d: d.find_element("id", "live").text == "live")

    def broken(caller: Any = None) -> Any:
        raise DaemonError("the journal is locked (test)")

    monkeypatch.setattr(service, "status", broken)
    badge = wait_for(
        browser,
        lambda d: (
            "UNAVAILABLE" in d.find_element("id", "live").text and d.find_element("id", "live")
        ),
    )
    assert "the journal is locked (test)" in badge.text
    assert "live-off" in badge.get_attribute("class").split()
    shoot(browser, screenshots, "state-unavailable")
