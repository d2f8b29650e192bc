"""A run that ``labeling-pipeline run`` made is re-executed the way the UI's "Re-execute all"
button does it: the ``launchRunReexecution`` GraphQL mutation of a Dagster web server that the
test starts on 127.0.0.1 over the repository's workspace.yaml; the daemon then runs it, from
the same directories (its run config), to success.

With ``LABELING_UI_SCREENSHOT=path.png`` set (and Chromium installed), the web server's page of
the re-executed run is also saved there (headless Chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from labeling_pipeline.cli import EXIT_OK, main
from labeling_pipeline.cli.instance import instance_at
from labeling_pipeline.cli.launch import WORKSPACE_FILE, daemon_for, paths_run_config
from labeling_pipeline.synthetic.sample_data import build_dataset
from labeling_pipeline_tests.orthanc_server import free_port

pytestmark = pytest.mark.slow

REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


@pytest.fixture
def webserver(dagster_home: Path) -> Iterator[str]:
    """``dagster-webserver`` over workspace.yaml for the instance at ``dagster_home``, on a
    free port of 127.0.0.1; its base URL."""
    port = free_port()
    executable = Path(sys.executable).with_name("dagster-webserver")
    command = (
        [str(executable)] if executable.exists() else [sys.executable, "-m", "dagster_webserver"]
    )
    log = (dagster_home / "webserver.log").open("wb")
    process = subprocess.Popen(
        [*command, "-w", str(WORKSPACE_FILE), "-h", "127.0.0.1", "-p", str(port)],
        cwd=dagster_home,
        env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/server_info", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (dagster_home / "webserver.log").read_text()[-2000:]
                pytest.fail(f"the web server did not start: {tail}")
            time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_a_cli_run_is_reexecuted_from_the_ui(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dagster_home: Path, webserver: str
) -> None:
    data, output = tmp_path / "data", tmp_path / "out"
    truth = build_dataset(data, 2, 3)
    assert main(["run", "--quiet", "--data-dir", str(data), "--output-dir", str(output)]) == EXIT_OK
    assert "studies:          2 (2 labelled, 0 failed)" in capsys.readouterr().out

    with instance_at(dagster_home) as instance:
        [label_run] = instance.get_runs(filters=dg.RunsFilter(job_name="label_study_job"))
        # The run names its directories, so a server with another environment labels the same.
        assert label_run.run_config["resources"] == paths_run_config(data, output)["resources"]

    answer = requests.post(
        f"{webserver}/graphql",
        json={"query": REEXECUTE, "variables": {"parentRunId": label_run.run_id}},
        timeout=120,
    ).json()
    result = answer["data"]["launchRunReexecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    new_run_id = result["run"]["runId"]

    with instance_at(dagster_home) as instance:
        again = instance.get_run_by_id(new_run_id)
        assert again.parent_run_id == label_run.run_id
        assert again.root_run_id == label_run.run_id
        assert again.remote_job_origin.location_name == "labeling_pipeline"
        for tag in ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end"):
            assert again.tags[tag] == label_run.tags[tag]
        # The UI queued it; the daemon (this instance has none running: one is started) runs it.
        with daemon_for(instance, dagster_home):
            deadline = time.monotonic() + 600
            while not instance.get_run_by_id(new_run_id).is_finished:
                assert time.monotonic() < deadline, "the re-executed run did not finish"
                time.sleep(1)
        assert instance.get_run_by_id(new_run_id).status == dg.DagsterRunStatus.SUCCESS
        materialized = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("label_dataset")), limit=10
        ).records
        assert {r.run_id for r in materialized} == {label_run.run_id, new_run_id}
    labels = pd.read_parquet(output / "labels")
    assert set(labels["sop_instance_uid"]) == set(truth)

    screenshot = os.environ.get("LABELING_UI_SCREENSHOT", "").strip()
    if screenshot:
        _screenshot(f"{webserver}/runs/{new_run_id}", Path(screenshot))


def _screenshot(url: str, path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if not binary or not Path(driver_path).is_file():
        pytest.skip(
            "Chromium or its driver is not installed (apt-get install chromium chromium-driver)"
        )
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    options.binary_location = binary
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        driver.get(url)
        time.sleep(8)  # the run page fills in from GraphQL after loading
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    finally:
        driver.quit()
