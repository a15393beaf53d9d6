"""The dashboard in a real browser (Debian's chromium, driven headless by Playwright) against the
whole local environment, during a rollout: what a person would see, not the page's source."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, sync_playwright

from devenv.registries import RegistryControl
from devenv.stack import Stack
from shared.domain.model import rollout_id
from tests.e2e.conftest import (
    REGIONS,
    SLOW_EXTRA_DELAY_S,
    SLOW_REGION,
    Pushed,
    slow_region_has_history,
)
from tests.e2e.local_api import FunctionApp

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / ".georollout" / "artifacts"
# Long enough that a page refreshing every 3 s shows the slow region waiting for its replica.
SLOW_REGION_DELAY_S = 10.0
LIVE_TIMEOUT_MS = 150_000


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, "chromium is missing: `make setup` installs it (Debian's `chromium`)"
    return found


@pytest.fixture
def page() -> Iterator[tuple[Page, list[str]]]:
    """A headless chromium page and the console errors it reports (kept in the list)."""
    problems: list[str] = []
    # Root cannot run chromium's sandbox (CI runs as root); anyone else keeps it.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=args)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})

            def on_console(message: ConsoleMessage) -> None:
                if message.type in ("error", "warning"):
                    problems.append(f"console {message.type}: {message.text}")

            def on_error(error: Error) -> None:
                problems.append(f"uncaught: {error}")

            tab.on("console", on_console)
            tab.on("pageerror", on_error)
            yield tab, problems
        finally:
            browser.close()


def test_the_dashboard_follows_a_rollout_by_itself_until_every_region_is_live(
    page: tuple[Page, list[str]],
    stack: Stack,
    app: FunctionApp,
    registry_control: RegistryControl,
    push: Callable[[str, str], Pushed],
) -> None:
    tab, problems = page
    slow_region_has_history(app, push)
    registry_control.set_region(SLOW_REGION, extra_delay_s=SLOW_REGION_DELAY_S)
    try:
        pushed = push("dashboard/model", "v1")
        the_id = rollout_id(stack.env.primary.registry_host, pushed.repository, pushed.digest)
        tab.goto(f"{stack.env.host_url}/api/dashboard")
        row = tab.locator(f'#rollouts tbody tr[data-id="{the_id}"]')
        row.wait_for(timeout=30_000)
        row.click()
        # Every region has its cell in the grid and its line in the timeline.
        for region in REGIONS:
            assert row.locator(f'td[data-region="{region}"] .state').is_visible(), region
            assert tab.locator(f'#timeline g[data-region="{region}"] rect').count() >= 1, region
        # The slow replica lags: once the primary has the image, the page lists the slow
        # region among those waiting, with when its replica is expected (it has history).
        primary = row.locator(
            f'td[data-region="{REGIONS[0]}"]:not([data-state="awaiting_replication"])'
        )
        primary.wait_for(timeout=30_000)
        waiting = tab.locator(f'#waiting tbody tr[data-region="{SLOW_REGION}"]')
        waiting.filter(has_text="Z").wait_for(timeout=10_000)
        expected = waiting.locator("td").nth(2).inner_text()
        assert re.fullmatch(r"\d\d:\d\d:\d\dZ", expected), expected
        assert "eta " in row.locator(f'td[data-region="{SLOW_REGION}"]').inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "dashboard-during-rollout.png"), full_page=True)
    finally:
        registry_control.set_region(SLOW_REGION, extra_delay_s=SLOW_EXTRA_DELAY_S)
    # Nobody reloads: the page asks again by itself until the grid says live.
    live_row = tab.locator(f'#rollouts tbody tr[data-id="{the_id}"][data-state="live"]')
    live_row.wait_for(timeout=LIVE_TIMEOUT_MS)
    for region in REGIONS:
        cell = live_row.locator(f'td[data-region="{region}"]')
        assert cell.get_attribute("data-state") == "live", region
        assert cell.inner_text().splitlines()[-1].startswith("live +"), cell.inner_text()
        bars = tab.locator(f'#timeline g[data-region="{region}"] rect[data-segment="live"]')
        assert bars.count() == 1, region
    assert "live" in tab.locator("#selected-title").inner_text()
    # The chart is drawn: a dot per recent arrival of each secondary region that has one.
    tab.locator("#latency-chart svg circle").first.wait_for(timeout=10_000)
    dots = {
        tab.locator(f'#latency-chart circle[data-region="{region}"]').count()
        for region in REGIONS[1:]
    }
    assert max(dots) >= 1, dots
    assert tab.locator("#problem").is_hidden()
    assert problems == []
    # An operator's button asks for a reason and says what the API answered: nothing is
    # left to retry in a live rollout, so the API refuses and the page says why.
    tab.once("dialog", lambda dialog: dialog.accept("checked from the dashboard test"))
    tab.locator("#action-retry").click()
    result = tab.locator("#action-result")
    result.filter(has_text="refused").wait_for(timeout=10_000)
    assert result.inner_text().startswith("retry refused: "), result.inner_text()
    # The browser logs the refusal's 409 as a failed resource; nothing else went wrong.
    assert [p for p in problems if "409 (Conflict)" not in p] == []
    tab.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
