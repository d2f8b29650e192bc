"""The label checks fail on exactly the problems they are named after."""

import math
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.defs.labels.checks import (
    batch_result,
    completeness_result,
    review_result,
    run_partitions,
    spacing_check_result,
)
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.labels.dataset import label_rows
from labeling_pipeline.labels.qa import adjacent_vertebra_steps
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.template import TemplateLandmark, TemplateLandmarks

SPACING_MM = 0.5  # pixels are 0.5 mm: a 35 mm step is 70 pixels
TEMPLATE = TemplateLandmarks(
    region="lumbar",
    landmarks=(
        TemplateLandmark("L5", "vertebra", 100.0, 200.0),
        TemplateLandmark("L4", "vertebra", 100.0, 130.0),
        TemplateLandmark("L3", "vertebra", 100.0, 60.0),
        TemplateLandmark("L4-L5", "disc", 100.0, 165.0),
    ),
)


def _image(sop: str) -> LabelImage:
    return LabelImage(
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_instance_uid=sop,
        study_date="20260901",
        modality="MR",
        pixels=np.zeros((256, 256), dtype=np.float32),
        pixel_spacing_mm=(SPACING_MM, SPACING_MM),
    )


def _labels(sop: str, l3_y: float = 60.0, l4_status: str = OK) -> pd.DataFrame:
    """Rows of one image: L5 at y=200, L4 at y=130, L3 at ``l3_y`` (pixels), disc ok."""
    positions = {"L5": 200.0, "L4": 130.0, "L3": l3_y, "L4-L5": 165.0}
    results = [
        LandmarkResult(
            lm.name,
            lm.kind,
            100.0,
            positions[lm.name],
            0.8,
            l4_status if lm.name == "L4" else OK,
        )
        for lm in TEMPLATE.landmarks
    ]
    return label_rows(_image(sop), "incoming-20260901-aaaaaaaa", results, template=TEMPLATE)


@pytest.fixture(scope="module")
def bundle() -> TemplateBundle:
    return TemplateBundle(reference=None, landmarks=TEMPLATE, domain=load_domain("lumbar"))


def landmark_spacing_within_domain(
    label_dataset: pd.DataFrame, template_reference: TemplateBundle
) -> dg.AssetCheckResult:
    """The spacing check of one study, as the asset check computes it per study."""
    domain = template_reference.domain
    return spacing_check_result(adjacent_vertebra_steps(label_dataset, order=domain.order), domain)


def test_spacing_check_passes_within_the_lumbar_ranges(bundle: TemplateBundle) -> None:
    result = landmark_spacing_within_domain(label_dataset=_labels("1.1"), template_reference=bundle)
    assert result.passed
    assert result.metadata["steps_checked"].value == 2  # L5-L4 and L4-L3, 35 mm each


def test_spacing_check_fails_on_a_too_long_step(bundle: TemplateBundle) -> None:
    stretched = _labels("1.1", l3_y=0.0)  # L4 -> L3 is 65 mm, above the 52 mm limit
    result = landmark_spacing_within_domain(label_dataset=stretched, template_reference=bundle)
    assert not result.passed
    assert result.metadata["violations"].value == 1
    assert "L4-L3" in result.metadata["violation_table"].value


def test_spacing_check_ignores_steps_through_a_landmark_needing_review(
    bundle: TemplateBundle,
) -> None:
    labels = _labels("1.1", l3_y=0.0, l4_status=NEEDS_REVIEW)
    labels.loc[labels["landmark"] == "L4", ["x", "y", "x_mm", "y_mm"]] = math.nan
    result = landmark_spacing_within_domain(label_dataset=labels, template_reference=bundle)
    # Nothing could be checked: a warning that says so, not a silent pass.
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["steps_checked"].value == 0
    assert "nothing to check" in result.description


def test_a_study_with_landmarks_needing_review_warns(bundle: TemplateBundle) -> None:
    assert review_result(_labels("1.1")).passed
    result = review_result(_labels("1.1", l4_status=NEEDS_REVIEW))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["needs_review"].value == 1 and "L4" in result.description + str(
        result.metadata["flagged_table"].value
    )


def test_completeness_check_counts_expected_rows(bundle: TemplateBundle) -> None:
    labels = _labels("1.1")  # the second image has no rows
    result = completeness_result(labels, ["1.1", "1.2"], bundle.landmarks.names())
    assert not result.passed
    assert result.metadata["expected_rows"].value == 8
    assert result.metadata["problems"].value == 4


def test_a_batch_names_the_studies_that_did_not_pass(bundle: TemplateBundle) -> None:
    good = landmark_spacing_within_domain(_labels("1.1"), bundle)
    bad = landmark_spacing_within_domain(_labels("1.2", l3_y=0.0), bundle)
    warned = review_result(_labels("1.3", l4_status=NEEDS_REVIEW))
    result = batch_result({"incoming-20260901-aaaaaaaa": good, "incoming-20260902-bbbbbbbb": bad})
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["studies"].value == {"incoming-20260902-bbbbbbbb": bad.description}
    assert result.description.startswith("1 of 2 studies passed; incoming-20260902-bbbbbbbb")
    both_good = batch_result({"a": good, "b": good})
    assert both_good.passed and both_good.metadata["studies"].value == {}
    only_warned = batch_result({"a": good, "c": warned}, severity=dg.AssetCheckSeverity.WARN)
    assert not only_warned.passed and only_warned.severity == dg.AssetCheckSeverity.WARN
    assert batch_result({"a": bad}) is bad  # one study: its own result, with its tables


def test_the_checks_of_a_run_read_its_studies_once_each_with_its_own_copy(tmp_path) -> None:
    reads: list[str] = []

    def read(directory, key: str) -> pd.DataFrame:
        reads.append(key)
        return pd.DataFrame({"x": [1.0, 2.0]})

    run = SimpleNamespace(run=SimpleNamespace(run_id="run-1"), partition_keys=["a", "b"])
    first = run_partitions(run, read, tmp_path)
    first["a"].loc[0, "x"] = 99.0  # one check's changes do not reach the next
    second = run_partitions(run, read, tmp_path)
    assert reads == ["a", "b"] and second["a"]["x"].tolist() == [1.0, 2.0]
    other_run = SimpleNamespace(run=SimpleNamespace(run_id="run-2"), partition_keys=["a"])
    run_partitions(other_run, read, tmp_path)
    assert reads == ["a", "b", "a"]  # another run reads afresh
