"""The live dashboard, loaded in a real headless Chromium, shows the counts of the records we produce."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from playwright.sync_api import sync_playwright
from support.records import GOOD, MINUTE_MS, predicted_labels

from iris_app.windows import window_start

# Debian's Chromium when installed (.ci/run installs it), else Playwright's own headless one
# (`playwright install chromium`; `make test` tries it, and stops if there is neither).
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_dashboard_shows_the_current_confusion_matrix(worker, kafka, scorer, tmp_path):
    """The newest window's counts, the model, record rate, lag and accuracy charts, serving beside shadow."""
    # A window ahead of every other test's, so it is the newest: the dashboard's "current" one (and
    # within IRIS_MAX_CLOCK_SKEW_SECONDS, 5 minutes, of the clock: records further ahead are not counted).
    window = window_start(int(time.time() * 1000), MINUTE_MS) + 4 * MINUTE_MS
    records = GOOD * 3
    kafka.produce("iris", [(None, orjson.dumps(r), window + i) for i, r in enumerate(records)])
    labels = predicted_labels(scorer, records)
    expected = Counter((r.get("species", "unknown"), label) for r, label in zip(records, labels))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=DEBIAN_CHROMIUM if DEBIAN_CHROMIUM.exists() else None, args=FLAGS
        )
        try:
            page = browser.new_page()
            page.goto(worker.url + "/")
            page.wait_for_function(
                """expected => expected.every(([s, p, n]) => {
                    const cell = document.querySelector(`td[data-species="${s}"][data-predicted="${p}"]`);
                    return cell && cell.textContent === String(n);
                })""",
                arg=[[s, p, n] for (s, p), n in expected.items()],
                timeout=60_000,
            )
            cells = page.eval_on_selector_all(
                "td[data-species]",
                "tds => tds.map(td => [td.dataset.species, td.dataset.predicted, td.textContent])",
            )
            model = page.text_content("#model")
            # Records flowing while the page is open show as records/s, and in the chart of the last hour.
            more = [(None, orjson.dumps(r), window + 100 + i) for i, r in enumerate(records)]
            with ThreadPoolExecutor(1) as aside:  # Playwright's loop runs on this thread
                aside.submit(kafka.produce, "iris", more).result()
            page.wait_for_function("Number(document.getElementById('rate').textContent) > 0", timeout=60_000)
            rate_points = page.get_attribute("#rate-chart polyline", "points")
            page.wait_for_function("document.getElementById('accuracy').textContent.endsWith('%')")
            page.wait_for_function("/^[0-9]+$/.test(document.getElementById('lag').textContent)")
            axis = page.text_content("#chart .axis-start")
            lag_chart = page.eval_on_selector_all("#lag-chart text", "ts => ts.map(t => t.textContent)")
            shadow = page.text_content("#shadow")
            side_by_side = page.eval_on_selector_all(
                "#models tr", "rows => rows.map(r => [...r.children].map(c => c.textContent))"
            )
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()

    assert {(s, p): int(n) for s, p, n in cells if int(n)} == dict(expected)
    assert len(cells) == 12  # 4 true species (with unknown) x 3 predicted
    assert model.startswith("DeepLearning_") and shadow == "none"
    assert axis.endswith(" UTC")  # the accuracy chart's time axis
    assert rate_points and any(
        label.endswith(" UTC") for label in lag_chart
    )  # rate and lag charted over time
    assert side_by_side[0] == ["window (UTC)", "serving", "shadow", "agreement"]
    assert any(row[1].endswith("%") and row[2] == "–" for row in side_by_side[1:])  # no shadow: a dash
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


HOSTILE = '<img src=x onerror="window.injected = true">'


def answer_with(body: object):
    """A Playwright route handler answering `body` as JSON."""

    def answer(route) -> None:
        route.fulfill(content_type="application/json", body=orjson.dumps(body))

    return answer


def test_dashboard_writes_fetched_text_never_html(worker):
    """What it fetches is written as text, never as HTML: a hostile answer injects nothing."""
    # Answers as a compromised or broken worker could give them, in place of the real pages.
    counts = [
        {
            "species": "setosa",
            "predictedSpecies": "setosa",
            "startMs": 60_000,
            "endMs": 120_000,
            "count": HOSTILE,
        },
        {"species": HOSTILE, "predictedSpecies": HOSTILE, "startMs": 60_000, "endMs": 120_000, "count": 3},
    ]
    model = {"serving": {"modelId": HOSTILE}, "shadow": {"modelId": HOSTILE}, "refused": None}
    accuracy = [
        {"startMs": 60_000, "endMs": 120_000, "modelId": HOSTILE, "role": role, "correct": 1, "total": 1}
        | {"accuracy": HOSTILE, "agreement": HOSTILE}
        for role in ("serving", "shadow")
    ]
    answers = {"/counts/": counts, "/model/": model, "/accuracy/": accuracy}

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=DEBIAN_CHROMIUM if DEBIAN_CHROMIUM.exists() else None, args=FLAGS
        )
        try:
            page = browser.new_page()
            for path, body in answers.items():
                page.route(worker.url + path, answer_with(body))
            page.goto(worker.url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('<img')")
            page.wait_for_function("document.getElementById('refreshed').textContent !== 'never'")
            images = page.eval_on_selector_all("img", "imgs => imgs.length")
            injected = page.evaluate("window.injected === true")
            setosa = page.text_content('td[data-species="setosa"][data-predicted="setosa"]')
        finally:
            browser.close()

    assert images == 0 and not injected
    assert setosa == "–"  # a count that is not a number is shown as a dash
