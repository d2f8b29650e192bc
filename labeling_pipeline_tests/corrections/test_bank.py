"""The review bank: which reviewed images join, what is written, bounds and idempotence."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.corrections import curate_labels, read_corrections
from labeling_pipeline.corrections.bank import (
    BANK_PREFIX,
    SOURCE_FILE,
    bank_candidates,
    bank_changed_ns,
    bank_version,
    refresh_template_bank,
    studies_to_retry,
)
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.localization.template import (
    load_template_landmarks,
    named_template_files,
)
from labeling_pipeline.review.workspace import ReviewWorkspace

LUMBAR = load_domain("lumbar")


def _review_fully(workspace: ReviewWorkspace, study, reviewer: str = "ann") -> None:
    """Move every flagged landmark of ``study`` to its truth, mark S1 not in view when it was
    missing, and accept the rest: every landmark is then settled."""
    actions = []
    for name in study.flagged:
        if name == "S1":
            actions.append({"landmark": name, "action": "not_in_view"})
        else:
            x, y = study.truth[name]
            actions.append({"landmark": name, "action": "move", "x": x, "y": y})
    actions.append({"action": "accept_all"})
    workspace.record(study.sop_instance_uid, reviewer, actions)


def _refresh(reviewable, limit: int = 8):
    curated = curate_labels(reviewable.labels(), read_corrections(reviewable.corrections_dir))
    return refresh_template_bank(
        reviewable.output_dir / "template_bank",
        curated,
        read_catalog(reviewable.output_dir / "catalog.parquet"),
        reviewable.data_dir,
        "lumbar",
        LUMBAR.order,
        limit=limit,
    )


def test_machine_labels_alone_or_a_partial_review_do_not_join(reviewable):
    assert _refresh(reviewable).entries == []
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[1]  # L4 and L5 flagged
    x, y = study.truth["L4"]
    workspace.record(
        study.sop_instance_uid, "ann", [{"landmark": "L4", "action": "move", "x": x, "y": y}]
    )
    assert _refresh(reviewable).entries == []  # L5 still needs review
    assert bank_candidates(workspace.curated(), LUMBAR.order) == []


def test_a_fully_reviewed_image_becomes_a_valid_deidentified_template(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[0]  # L3 misplaced, S1 missing
    _review_fully(workspace, study)
    refreshed = _refresh(reviewable)
    assert len(refreshed.entries) == 1 and refreshed.problems == []
    [files], problems = named_template_files(reviewable.output_dir / "template_bank", BANK_PREFIX)
    assert problems == [] and files.name == BANK_PREFIX + refreshed.entries[0]
    # No UID in clear in the folder name.
    assert study.sop_instance_uid not in files.name

    landmarks = load_template_landmarks(files.landmarks)
    names = landmarks.by_name()
    assert landmarks.region == "lumbar"
    assert "S1" not in names and "L5-S1" in names  # not in view: left out
    assert (names["L3"].x, names["L3"].y) == pytest.approx(study.truth["L3"], abs=1e-3)

    template = read_label_image(files.image)
    source = read_label_image(reviewable.data_dir / "incoming" / "study_0" / "IM0001.dcm")
    assert template.pixels.shape == source.pixels.shape
    assert template.pixel_spacing_mm == pytest.approx(source.pixel_spacing_mm)
    scale = float(np.ptp(source.pixels))
    assert np.abs(template.pixels - source.pixels).max() <= scale / 65535 + 1e-3
    header = pydicom.dcmread(files.image)
    assert str(header.get("PatientName", "")) == "" and str(header.get("PatientID", "")) == ""
    assert header.SOPInstanceUID != source.sop_instance_uid
    assert header.StudyInstanceUID != source.study_uid
    assert "StudyDate" not in header

    info = json.loads((files.landmarks.parent / SOURCE_FILE).read_text())
    assert info["sop_instance_uid"] == study.sop_instance_uid and info["corrected"] == 1


def test_refreshing_again_writes_nothing_and_a_revert_removes_the_image(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[0]
    _review_fully(workspace, study)
    first = _refresh(reviewable)
    version = bank_version(reviewable.output_dir / "template_bank")
    entry = reviewable.output_dir / "template_bank" / first.entries[0]
    stamp = (entry / "template.dcm").stat().st_mtime_ns
    again = _refresh(reviewable)
    assert again.written == [] and again.kept == first.entries and again.removed == []
    assert (entry / "template.dcm").stat().st_mtime_ns == stamp
    assert bank_version(reviewable.output_dir / "template_bank") == version

    workspace.record(study.sop_instance_uid, "ann", [{"landmark": "L3", "action": "revert"}])
    reverted = _refresh(reviewable)
    assert reverted.entries == [] and reverted.removed == first.entries
    assert not entry.exists()
    assert bank_version(reviewable.output_dir / "template_bank") != version


def test_the_bank_is_bounded_and_keeps_the_newest_reviews(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    first, second = reviewable.studies
    _review_fully(workspace, first)
    x4, y4 = second.truth["L4"]
    x5, y5 = second.truth["L5"]
    workspace.record(
        second.sop_instance_uid,
        "bob",
        [
            {"landmark": "L4", "action": "move", "x": x4, "y": y4},
            {"landmark": "L5", "action": "move", "x": x5, "y": y5},
        ],
    )
    both = _refresh(reviewable)
    assert len(both.entries) == 2
    bounded = _refresh(reviewable, limit=1)
    [kept] = bounded.entries
    info = json.loads((reviewable.output_dir / "template_bank" / kept / SOURCE_FILE).read_text())
    assert info["sop_instance_uid"] == second.sop_instance_uid  # reviewed last
    assert len(bounded.removed) == 1


def test_an_image_whose_file_is_gone_is_reported_not_added(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[0]
    _review_fully(workspace, study)
    (reviewable.data_dir / "incoming" / "study_0" / "IM0001.dcm").unlink()
    refreshed = _refresh(reviewable)
    assert refreshed.entries == []
    [problem] = refreshed.problems
    assert study.partition_key in problem


def test_the_review_workspace_refreshes_the_bank_in_the_templates_region(reviewable):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    template_dir = reviewable.data_dir / "template"
    template_dir.mkdir(parents=True)
    (template_dir / "landmarks.json").write_text(
        json.dumps(
            {"region": "lumbar", "landmarks": [{"name": "L1", "kind": "vertebra", "x": 1, "y": 1}]}
        )
    )
    _review_fully(workspace, reviewable.studies[0])
    refreshed = workspace.refresh_bank()
    assert len(refreshed.entries) == 1
    candidates = bank_candidates(workspace.curated(), LUMBAR.order)
    assert [c.name for c in candidates] == refreshed.entries
    placed = {name for name, *_ in candidates[0].landmarks}
    assert "S1" not in placed and {"L1", "L3", "L5"} <= placed
    assert all(math.isfinite(x) and math.isfinite(y) for _, _, x, y in candidates[0].landmarks)


def test_candidates_need_two_placed_vertebrae():
    rows = pd.DataFrame(
        {
            "sop_instance_uid": ["a"] * 3,
            "partition_key": ["k"] * 3,
            "landmark": ["L1", "L2", "L1-L2"],
            "kind": ["vertebra", "vertebra", "disc"],
            "x": [10.0, math.nan, 12.0],
            "y": [10.0, math.nan, 20.0],
            "status": ["corrected", "not_in_view", "confirmed"],
            "reviewed_at": ["2026-01-01T00:00:00Z"] * 3,
        }
    )
    assert bank_candidates(rows, LUMBAR.order) == []
    rows.loc[1, ["x", "y", "status"]] = [11.0, 40.0, "ok"]
    [candidate] = bank_candidates(rows, LUMBAR.order)
    assert candidate.corrected == 1 and candidate.confirmed == 1


def _label_file(labels_dir, key: str, statuses: list[str], modified_s: float) -> None:
    """A partition's label file as far as the retry question reads it (its ``status`` column),
    written at a given modification time."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    path = labels_dir / f"{key}.parquet"
    pd.DataFrame(
        {"landmark": [f"L{i}" for i in range(len(statuses))], "status": statuses}
    ).to_parquet(path)
    os.utime(path, (modified_s, modified_s))


def _bank_entry(bank_dir, name: str, modified_s: float) -> None:
    entry = bank_dir / f"reviewed-{name}"
    entry.mkdir(parents=True)
    (entry / "landmarks.json").write_text("{}")
    for path in (entry / "landmarks.json", entry, bank_dir):
        os.utime(path, (modified_s, modified_s))


def test_studies_labelled_with_flags_before_the_bank_changed_are_retried_once(tmp_path):
    labels, bank = tmp_path / "labels", tmp_path / "template_bank"
    _label_file(labels, "flagged", ["ok", "needs_review"], 1000)
    _label_file(labels, "clean", ["ok", "ok"], 1000)
    assert studies_to_retry(labels, bank) == frozenset()  # no bank yet: nothing to learn from
    assert bank_changed_ns(bank) is None

    _bank_entry(bank, "a", 2000)
    assert bank_changed_ns(bank) == 2000 * 10**9
    assert studies_to_retry(labels, bank) == {"flagged"}
    # Labelled again after the change (still flagged or not): not asked again...
    _label_file(labels, "flagged", ["ok", "needs_review"], 3000)
    assert studies_to_retry(labels, bank) == frozenset()
    # ...until the bank changes again; a study labelled clean never is.
    _bank_entry(bank, "b", 4000)
    assert studies_to_retry(labels, bank) == {"flagged"}
    # The bank emptied (every entry reverted): nothing to retry with.
    shutil.rmtree(bank / "reviewed-a")
    shutil.rmtree(bank / "reviewed-b")
    assert studies_to_retry(labels, bank) == frozenset()
