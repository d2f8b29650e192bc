"""Learning from review, measured: a set whose default template does not suit it (a fat-image
template for water images of a Dixon scan, a contrast the default cannot expect), a few flagged
images corrected from their truth through the review workspace (as the review app records
them), the review bank refreshed from those decisions, and the set labelled again with it.

On the images nobody corrected, the second run must flag fewer landmarks and get no more
vertebrae wrong (``localization/evaluation.py``). The real feature extractor runs on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.corrections.bank import BANK_PREFIX
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.dicom import partition_key, read_label_image, scan_data_dir
from labeling_pipeline.labels.catalog import write_catalog
from labeling_pipeline.labels.dataset import label_rows, read_labels, write_labels_partition
from labeling_pipeline.localization.bundle import TemplateBundle, build_named_templates
from labeling_pipeline.localization.evaluation import (
    IDENTIFIED,
    REVIEW,
    WRONG,
    score_image,
)
from labeling_pipeline.localization.reference import build_template_reference
from labeling_pipeline.localization.search import SearchSettings
from labeling_pipeline.localization.study import localize_image
from labeling_pipeline.localization.template import (
    load_template_landmarks,
    named_template_files,
)
from labeling_pipeline.review.workspace import ReviewWorkspace
from labeling_pipeline.synthetic.dicom_writer import StudyInfo
from labeling_pipeline.synthetic.families import family_overrides
from labeling_pipeline.synthetic.phantom import random_params
from labeling_pipeline.synthetic.sample_data import build_dataset, write_template

pytestmark = pytest.mark.slow

CASES = 20
SEED = 5
CORRECTED = 3  # flagged images a reviewer corrects
REVIEWER = "test reviewer"


@dataclass
class Counts:
    flagged: int = 0  # landmarks needs_review (vertebrae and discs)
    identified: int = 0  # vertebrae
    wrong: int = 0  # vertebrae ok but on the wrong level
    vertebrae: int = 0


@pytest.fixture(scope="module")
def learning(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("learning")
    data, output = root / "data", root / "outputs"
    truth = build_dataset(data, CASES, SEED, family="water")
    # The default template: a phantom in the fat image's contrast, with its own anatomy and
    # framing (drawn like a case of the fat family).
    rng = np.random.default_rng([99, 0, 7])
    write_template(
        random_params(rng, **family_overrides("fat", rng)),
        data / "template",
        StudyInfo(key="learning/template", case_number=0, study_date="20260105"),
    )
    write_catalog(output / "catalog.parquet", scan_data_dir(data).catalog_frame())
    images = {
        sop: read_label_image(data / entry["file"], entry["frame"]) for sop, entry in truth.items()
    }

    extractor = load_extractor()
    preparation = PreparationSettings()
    domain = load_domain("lumbar")
    template = load_template_landmarks(data / "template" / "landmarks.json")
    template_map, *maps = compute_feature_maps(
        [read_label_image(data / "template" / "template.dcm"), *images.values()],
        extractor,
        preparation,
    )
    bundle = TemplateBundle(
        build_template_reference(template_map, template, domain), template, domain
    )
    features = dict(zip(images, maps, strict=True))

    def label_all(alternatives) -> dict[str, Counts]:
        """Label every image, write the label dataset, count per image."""
        counts = {}
        for sop, image in images.items():
            located = localize_image(
                features[sop], bundle, SearchSettings(), image.pixel_spacing_mm, alternatives
            )
            key = partition_key("incoming", image.study_date, image.study_uid)
            names = dict(zip([r.name for r in located.results], located.templates, strict=True))
            rows = label_rows(image, key, located.results, {"strategy": "chain"}, template, names)
            write_labels_partition(output / "labels", key, rows)
            vertebrae = {
                n: (p["x"], p["y"])
                for n, p in truth[sop]["landmarks"].items()
                if p["kind"] == "vertebra"
            }
            outcomes = score_image(sop, located.results, vertebrae, image.pixel_spacing_mm)
            counts[sop] = Counts(
                flagged=sum(r.status == "needs_review" for r in located.results),
                identified=sum(o.outcome == IDENTIFIED for o in outcomes),
                wrong=sum(o.outcome == WRONG for o in outcomes),
                vertebrae=sum(o.outcome in (IDENTIFIED, WRONG, REVIEW) for o in outcomes),
            )
        return counts

    before = label_all([])
    flagged = sorted(sop for sop, c in before.items() if c.flagged)
    corrected = flagged[:CORRECTED]

    # A reviewer places each landmark of the corrected images where it truly is (or marks it
    # not in view), as the review app records it.
    workspace = ReviewWorkspace(data, output)
    for sop in corrected:
        actions = []
        for row in workspace.image_rows(sop).to_dict("records"):
            true = truth[sop]["landmarks"].get(row["landmark"])
            if true is None:
                actions.append({"landmark": row["landmark"], "action": "not_in_view"})
            else:
                actions.append(
                    {"landmark": row["landmark"], "action": "move", "x": true["x"], "y": true["y"]}
                )
        workspace.record(sop, REVIEWER, actions)
    refreshed = workspace.refresh_bank()

    files, problems = named_template_files(output / "template_bank", prefix=BANK_PREFIX)
    bank, unusable = build_named_templates(files, domain, extractor, preparation)
    after = label_all(bank)
    return {
        "before": before,
        "after": after,
        "flagged": flagged,
        "corrected": corrected,
        "refreshed": refreshed,
        "bank": bank,
        "problems": problems + unusable,
        "output": output,
    }


def _total(counts: dict[str, Counts], images: list[str]) -> Counts:
    total = Counts()
    for sop in images:
        for name in ("flagged", "identified", "wrong", "vertebrae"):
            setattr(total, name, getattr(total, name) + getattr(counts[sop], name))
    return total


def test_the_corrected_images_join_the_bank(learning: dict) -> None:
    assert len(learning["flagged"]) > CORRECTED, "the set must have flagged images left over"
    assert len(learning["corrected"]) == CORRECTED
    assert len(learning["refreshed"].entries) == CORRECTED
    assert learning["problems"] == []
    assert sorted(t.name for t in learning["bank"]) == sorted(
        BANK_PREFIX + name for name in learning["refreshed"].entries
    )


def test_a_run_with_the_bank_flags_fewer_and_gets_no_more_wrong(learning: dict) -> None:
    others = [sop for sop in learning["before"] if sop not in learning["corrected"]]
    before = _total(learning["before"], others)
    after = _total(learning["after"], others)
    print(
        f"\nnot corrected: {len(others)} images, {before.vertebrae} vertebrae; "
        f"flagged landmarks {before.flagged} -> {after.flagged}; "
        f"identified {before.identified} -> {after.identified}; "
        f"confidently wrong {before.wrong} -> {after.wrong}"
    )
    assert after.flagged < before.flagged
    assert after.wrong <= before.wrong
    assert after.identified > before.identified
    # No image gets worse: the bank only adds to what the default template placed.
    for sop in others:
        assert learning["after"][sop].flagged <= learning["before"][sop].flagged, sop
        assert learning["after"][sop].wrong <= learning["before"][sop].wrong, sop


def test_the_labels_record_which_template_placed_each_landmark(learning: dict) -> None:
    labels = read_labels(learning["output"] / "labels")
    used = set(labels["template"])
    assert "default" in used
    assert any(name.startswith(BANK_PREFIX) for name in used), used
    banked = labels[labels["template"].str.startswith(BANK_PREFIX)]
    assert set(banked["status"]) == {"ok"}  # the bank only fills what it places ok
    assert math.isfinite(float(banked["x"].iloc[0]))
