"""The review page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by selenium): a reviewer drags a flagged landmark to its true place, marks one not in
view, accepts the rest, and the curated dataset has their decisions."""

import shutil
import time
from pathlib import Path

import pytest

from labeling_pipeline.corrections import curate_labels, read_corrections
from labeling_pipeline.labels.dataset import read_labels
from labeling_pipeline.review import ReviewServer

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _find(CHROMIUM), _find(DRIVERS)
    if not binary or not driver_path:
        pytest.skip(
            "Chromium or its driver is not installed (apt-get install chromium chromium-driver; "
            ".ci/run installs them)"
        )
    options = Options()
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(condition))


def _drag(driver, start: tuple[float, float], end: tuple[float, float]) -> None:
    actions = ActionBuilder(driver)
    pointer = actions.pointer_action
    pointer.move_to_location(round(start[0]), round(start[1]))
    pointer.pointer_down()
    for fraction in (0.25, 0.5, 0.75, 1.0):  # several moves, as a hand would make
        x = start[0] + (end[0] - start[0]) * fraction
        y = start[1] + (end[1] - start[1]) * fraction
        pointer.move_to_location(round(x), round(y))
    pointer.pointer_up()
    actions.perform()


def _curated_row(reviewable, sop: str, landmark: str) -> dict:
    curated = curate_labels(
        read_labels(reviewable.labels_dir), read_corrections(reviewable.corrections_dir)
    )
    rows = curated[(curated["sop_instance_uid"] == sop) & (curated["landmark"] == landmark)]
    return rows.iloc[0].to_dict()


def test_drag_a_flagged_landmark_to_its_true_place(browser, reviewable):
    study = reviewable.studies[0]  # the most uncertain image: opened first
    sop = study.sop_instance_uid
    with ReviewServer(reviewable.data_dir, reviewable.output_dir) as server:
        browser.get(server.url + "/")
        _wait(browser, "return window.reviewApp && window.reviewApp.state.image !== null")
        assert browser.execute_script("return reviewApp.state.image.sop_instance_uid") == sop
        queue = browser.find_elements(By.CSS_SELECTOR, "#queue li")
        assert [li.get_attribute("data-sop") for li in queue] == [
            s.sop_instance_uid for s in reviewable.studies
        ]
        browser.find_element(By.ID, "reviewer").send_keys("Test Reviewer")

        # Zoom in first (so a pixel spans several screen pixels), then drag L3.
        browser.execute_script("reviewApp.viewer.zoom(1.5)")
        machine = browser.execute_script(
            "const lm = reviewApp.state.image.landmarks.find(l => l.landmark === 'L3');"
            "return reviewApp.pagePosition(lm.x, lm.y);"
        )
        true_x, true_y = study.truth["L3"]
        target = browser.execute_script(f"return reviewApp.pagePosition({true_x}, {true_y});")
        _drag(browser, machine, target)
        _wait(browser, "return document.getElementById('message').textContent.startsWith('Saved')")
        scale = browser.execute_script("return reviewApp.viewer.scale")

        row = _curated_row(reviewable, sop, "L3")
        assert row["status"] == "corrected" and row["source"] == "reviewer"
        assert row["reviewer"] == "Test Reviewer"
        tolerance = 1.0 / scale + 0.05  # the page rounds the drop to whole screen pixels
        assert abs(row["x"] - true_x) <= tolerance and abs(row["y"] - true_y) <= tolerance
        assert abs(row["machine_x"] - true_x) > 10  # it really moved

        # S1 (not found) is not in view: select it in the table, press X; then accept all.
        browser.find_element(By.CSS_SELECTOR, "#landmarks tr[data-landmark='S1']").click()
        ActionChains(browser).send_keys("x").perform()
        _wait(
            browser,
            "return reviewApp.state.image.landmarks.find(l => l.landmark === 'S1')"
            ".status === 'not_in_view'",
        )
        ActionChains(browser).send_keys("a").perform()
        # The image is done, and the next one in the queue opens.
        _wait(
            browser,
            f"return reviewApp.state.image.sop_instance_uid === "
            f"'{reviewable.studies[1].sop_instance_uid}'",
        )
        assert _curated_row(reviewable, sop, "S1")["status"] == "not_in_view"
        assert _curated_row(reviewable, sop, "L1")["status"] == "confirmed"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#queue li")) == 1

        # The reviewer's name is remembered on the next visit.
        browser.get(server.url + "/")
        _wait(browser, "return window.reviewApp && window.reviewApp.state.image !== null")
        time.sleep(0.1)
        assert browser.find_element(By.ID, "reviewer").get_attribute("value") == "Test Reviewer"
