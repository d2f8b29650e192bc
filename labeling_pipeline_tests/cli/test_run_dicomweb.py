"""`labeling-pipeline run` with LABELING_DICOMWEB_URL set, against a real Orthanc holding sample
studies: the same labels as from the folder, the catalog says where each file came from, and a
second run retrieves nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from labeling_pipeline.cli import EXIT_OK, main
from labeling_pipeline.imaging.dicomweb import StudyStatus, cache_root
from labeling_pipeline_tests.imaging.dicomweb.helpers import settings_for
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA

pytestmark = pytest.mark.slow

# A 5-slice series, a 5-frame file, a file without extension, two archived single frames.
STUDIES = [
    "incoming/site_a/2026-09-02/study_0003",
    "incoming/site_b/20260903/0004",
    "incoming/site_b/20260904/0005",
    "archive/2026-02/study_0101",
]
KEY = ["sop_instance_uid", "landmark"]


def _data_dir(root: Path) -> Path:
    data = root / "data"
    for folder in ("template", "domain"):
        shutil.copytree(SAMPLE_DATA / folder, data / folder)
    return data


def _labels(output: Path) -> pd.DataFrame:
    labels = pd.read_parquet(output / "labels")
    return labels.sort_values(KEY).reset_index(drop=True)


def test_run_labels_server_studies_as_it_labels_the_folder(
    orthanc_factory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dagster_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "pw-e2e-not-in-outputs"
    server = orthanc_factory(users={"labeler": password})
    files = [p for study in STUDIES for p in (SAMPLE_DATA / study).rglob("*") if p.is_file()]
    assert set(server.upload(files).values()) == {200}

    folder = _data_dir(tmp_path / "folder")
    for path in files:
        target = folder / "incoming" / path.relative_to(SAMPLE_DATA)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    assert (
        main(["run", "--data-dir", str(folder), "--output-dir", str(tmp_path / "out_folder")])
        == EXIT_OK
    )

    pacs = _data_dir(tmp_path / "pacs")
    monkeypatch.setenv("LABELING_DICOMWEB_URL", server.dicomweb_url)
    monkeypatch.setenv("LABELING_DICOMWEB_USER", "labeler")
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", password)
    monkeypatch.setenv("LABELING_DICOMWEB_LOOKBACK_DAYS", "3650")  # the samples are from 2026
    capsys.readouterr()
    status = main(["run", "--data-dir", str(pacs), "--output-dir", str(tmp_path / "out_pacs")])
    out = capsys.readouterr().out
    assert status == EXIT_OK, out
    assert f"studies:          {len(STUDIES)} ({len(STUDIES)} labelled, 0 failed)" in out
    assert f"dicomweb:         {server.dicomweb_url} StudyDate " in out
    assert f"found {len(STUDIES)}, evicted 0, retrieved {len(STUDIES)}" in out
    # Write-back is off by default: no SR was sent to the server.
    assert "SRs on server" not in out
    client = settings_for(
        server, LABELING_DICOMWEB_USER="labeler", LABELING_DICOMWEB_PASSWORD=password
    ).client()
    assert client.search_for_instances(search_filters={"Modality": "SR"}) == []

    from_folder, from_server = _labels(tmp_path / "out_folder"), _labels(tmp_path / "out_pacs")
    assert len(from_server) == len(from_folder) > 0
    pd.testing.assert_frame_equal(
        from_server[[*KEY, "study_uid", "series_uid", "status"]],
        from_folder[[*KEY, "study_uid", "series_uid", "status"]],
    )
    for column in ("x", "y", "x_mm", "y_mm", "score"):
        assert from_server[column].to_numpy() == pytest.approx(
            from_folder[column].to_numpy(), nan_ok=True
        )
    # The same studies, keyed by their source: dicomweb-YYYYMMDD-<hash> for incoming-...
    assert sorted(from_server["partition_key"].unique()) == sorted(
        key.replace("incoming-", "dicomweb-", 1) for key in from_folder["partition_key"].unique()
    )

    catalog = pd.read_parquet(tmp_path / "out_pacs" / "catalog.parquet")
    assert set(catalog["source"]) == {"dicomweb"}
    assert set(catalog["server_url"]) == {server.dicomweb_url}
    assert set(catalog["outcome"]) == {"labelled", "accepted"}

    # Again: every study is up to date in the cache; nothing is retrieved a second time.
    state = cache_root(pacs) / ".dicomweb-state.json"
    before = json.loads(state.read_text())["studies"]
    assert {r["status"] for r in before.values()} == {StudyStatus.RETRIEVED}
    again = ["run", "--data-dir", str(pacs), "--output-dir", str(tmp_path / "out_again")]
    assert main([*again, "--partition", from_server["partition_key"].iloc[0]]) == EXIT_OK
    assert json.loads(state.read_text())["studies"] == before

    # A server refusing the credentials: reported, and the cached studies are still labelled.
    monkeypatch.setenv("LABELING_DICOMWEB_PASSWORD", "wrong")
    capsys.readouterr()
    assert main([*again, "--partition", from_server["partition_key"].iloc[0]]) == EXIT_OK
    out = capsys.readouterr().out
    assert "NOT SEARCHED, study search: HTTP 401" in out and "1 labelled, 0 failed" in out

    for path in (tmp_path / "out_pacs").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    for path in Path(dagster_home).rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
