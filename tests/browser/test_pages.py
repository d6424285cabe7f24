"""The project pages in a real browser: headless Chromium (Debian's, driven by Selenium through
its chromedriver) loads the projects list and a project with three rounds, waits for the
charts and checks what they show; the screenshots go to results/browser/.

The backend runs for real (the app on a local port), in front of the in-process fake Label
Studio with the test encoder, so the rounds are quick and deterministic.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from autoal_backend.app import create_app
from model.selectors.autoal.prior import load_prior
from model.strategies import PORTFOLIO
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import TEXT_CONFIG, FakeEncoder, FakeLabelStudio

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
RESULTS = Path(__file__).resolve().parents[2] / "results" / "browser"
pytestmark = pytest.mark.integration


def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("Debian's chromium and chromium-driver are not installed: run `make browser`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,1800"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class SlowEncoder(FakeEncoder):
    """The test encoder, slowed down so that a page can watch a cold start embed."""

    def encode(self, items: list):
        time.sleep(0.05 * len(items))
        return super().encode(items)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ls = FakeLabelStudio()
    text_project(ls, 7, labeled=12, unlabeled=40)
    root = tmp_path_factory.mktemp("pages")
    backend = make_backend(make_settings(root, AUTOAL_STRATEGY="autoal", AUTOAL_PUSH_WINDOW=20), ls)
    for round_number in range(3):  # three rounds, labels added between them
        backend._run_round(7)
        for i in range(4):
            task = 700 + 12 + 4 * round_number + i
            ls.annotate(7, task, ["pos" if task % 2 == 0 else "neg"])
    app = create_app(backend.settings, backend)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", backend, ls
    server.shutdown()
    backend.worker.stop()


@pytest.fixture(scope="module")
def driver():
    RESULTS.mkdir(parents=True, exist_ok=True)
    chrome = browser()
    yield chrome
    chrome.quit()


def wait_for(driver, css: str, count: int = 1, timeout: float = 20.0):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    pytest.fail(f"the page never showed {count} of {css!r}:\n{driver.page_source[:2000]}")


def test_the_project_page_shows_the_curve_the_weights_and_why_the_top_tasks_are_first(
    served, driver
):
    from selenium.webdriver.common.by import By

    url, backend, _ = served
    history = backend.store.load_history(7)
    assert len(history) == 3
    driver.get(f"{url}/projects/7")
    charts = wait_for(driver, "svg.chart", 3)
    assert driver.title == "AutoAL project 7"
    curve, labels, weights = charts
    axis = {
        t.get_attribute("data-axis") + ":" + t.text
        for t in curve.find_elements(By.CSS_SELECTOR, "text[data-axis]")
    }
    assert axis == {"x:labeled tasks", "y:accuracy"}
    curve_series = [
        g.get_attribute("data-series")
        for g in curve.find_elements(By.CSS_SELECTOR, "g[data-series]")
    ]
    # No task was served at random (the tests' settings): no figure is drawn, and the
    # headline says why in one sentence instead of a number.
    assert "on unlabeled tasks" not in curve_series and "cross-validated" in curve_series
    headline = driver.find_element(By.ID, "accuracy")
    assert headline.get_attribute("data-state") == "withheld"
    assert headline.text == (
        "No accuracy figure yet: 0 of the 10 tasks served at random that an accuracy figure "
        "needs are labeled so far."
    )
    label_series = {
        g.get_attribute("data-series")
        for g in labels.find_elements(By.CSS_SELECTOR, "g[data-series]")
    }
    assert label_series == {"pos", "neg"}
    strategies = [
        g.get_attribute("data-series")
        for g in weights.find_elements(By.CSS_SELECTOR, "g[data-series]")
    ]
    assert sorted(strategies) == sorted(history[-1]["mean_weights"])  # one series per strategy
    # the nine portfolio strategies and the shipped prior's extra (TypiClust, chosen alone)
    assert len(strategies) == len(PORTFOLIO) + len(load_prior("default").extras) == 10
    assert "share of the priority" in weights.text
    first = driver.find_elements(By.CSS_SELECTOR, "#top tr")[1]
    top = history[-1]["top"][0]
    assert first.find_element(By.CSS_SELECTOR, "td.reason").text == top["strategy"]
    assert f"task {top['task']}" in first.text
    assert "served at random" in driver.find_element(By.ID, "curve").text  # what it is built from
    assert driver.find_element(By.ID, "status").get_attribute("data-state") == "idle"
    driver.save_screenshot(str(RESULTS / "project.png"))
    assert (RESULTS / "project.png").stat().st_size > 10_000


def test_the_projects_list_links_to_each_project(served, driver):
    from selenium.webdriver.common.by import By

    url, _, _ = served
    driver.get(url + "/")
    links = wait_for(driver, "table a[href='/projects/7']")
    assert "project 7" in links[0].text
    row = links[0].find_element(By.XPATH, "./ancestor::tr")
    assert "idle" in row.text
    driver.save_screenshot(str(RESULTS / "projects.png"))


def test_a_cold_start_shows_embedding_progress(tmp_path, driver):
    ls = FakeLabelStudio()
    text_project(ls, 8, labeled=0, unlabeled=1)
    for i in range(1, 400):
        ls.add_task(8, 800 + i, {"text": "b" * (i % 9 + 1) + "a" * (i % 5) + f" {i}"})
    backend = make_backend(make_settings(tmp_path), ls, SlowEncoder())
    backend.runner.embedder.encoder_factory = lambda name, device: SlowEncoder()
    app = create_app(backend.settings, backend)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = app.test_client()
        assert (
            client.post("/setup", json={"project": "8.1", "schema": TEXT_CONFIG}).status_code == 200
        )
        deadline = time.monotonic() + 30
        while (
            backend.runner.progress(8).get("stage") != "embedding" and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        driver.get(f"http://127.0.0.1:{server.server_port}/projects/8")
        status = wait_for(driver, "#status[data-state='embedding']")[0]
        assert "embedding new tasks" in status.text and " of 400" in status.text
        wait_for(driver, "progress#embedding")
        driver.save_screenshot(str(RESULTS / "cold-start.png"))
        assert backend.worker.wait_idle(120)
    finally:
        server.shutdown()
        backend.worker.stop()
