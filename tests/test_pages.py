"""What a person sees of the pages: each path answers with and without its trailing slash, and the
dashboard tells the time in UTC, whatever the browser's time zone."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")  # else Playwright's own (as in test_dashboard.py)
PATHS = ["/counts/", "/counts/setosa/setosa/", "/accuracy/", "/model/", "/health", "/metrics"]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_answers_with_and_without_its_trailing_slash(worker, path):
    twin = path[:-1] if path.endswith("/") else path + "/"
    status, content_type, _ = worker.get(path)
    twin_status, twin_content_type, _ = worker.get(twin)

    assert status in (200, 503)  # /health: 503 while the worker cannot classify
    assert (twin_status, twin_content_type) == (status, content_type)


def test_an_unknown_path_is_still_a_json_404(worker):
    status, content_type, _ = worker.get("/no-such-page")
    assert (status, content_type) == (404, "application/json")


def test_the_dashboard_shows_when_it_was_refreshed_in_utc(worker):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=DEBIAN_CHROMIUM if DEBIAN_CHROMIUM.exists() else None, args=["--no-sandbox"]
        )
        try:
            # A browser twelve hours or so off UTC, and with a 12-hour clock.
            page = browser.new_page(timezone_id="Pacific/Honolulu", locale="en-US")
            page.goto(worker.url + "/")
            page.wait_for_function(
                "document.getElementById('refreshed').textContent !== 'never'", timeout=60_000
            )
            refreshed = page.text_content("#refreshed")
        finally:
            browser.close()

    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", refreshed), refreshed
    shown = time.strptime(refreshed.removesuffix(" UTC"), "%H:%M:%S")
    now = time.gmtime()
    minutes_off = abs((now.tm_hour * 60 + now.tm_min) - (shown.tm_hour * 60 + shown.tm_min)) % (24 * 60)
    assert min(minutes_off, 24 * 60 - minutes_off) <= 2
