"""COCO keypoints export, validated by loading and evaluating it with pycocotools."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from labeling_pipeline.corrections import (
    append_corrections,
    curate_labels,
    make_correction,
    read_corrections,
)
from labeling_pipeline.labels.coco import export_coco, keypoint_order
from labeling_pipeline.review.workspace import ReviewWorkspace

pycocotools_coco = pytest.importorskip("pycocotools.coco")
pycocotools_eval = pytest.importorskip("pycocotools.cocoeval")


@pytest.fixture
def curated(reviewable):
    labels = reviewable.labels()
    study = reviewable.studies[0]
    l3 = labels[
        (labels["sop_instance_uid"] == study.sop_instance_uid) & (labels["landmark"] == "L3")
    ]
    x, y = study.truth["L3"]
    append_corrections(
        reviewable.corrections_dir,
        [make_correction(l3.iloc[0].to_dict(), "move", "ann", x=x, y=y)],
    )
    return curate_labels(labels, read_corrections(reviewable.corrections_dir))


def test_keypoints_run_head_to_feet():
    frame = pd.DataFrame(
        {
            "landmark": ["S1", "L5-S1", "L4", "L5", "L4-L5"],
            "kind": ["vertebra", "disc", "vertebra", "vertebra", "disc"],
        }
    )
    assert keypoint_order(frame) == ["L4", "L4-L5", "L5", "L5-S1", "S1"]


def test_export_is_valid_coco_with_flagged_landmarks_invisible(reviewable, curated, tmp_path):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    output = tmp_path / "coco" / "keypoints.json"
    export_coco(curated, workspace.image, output, dates="year")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = pycocotools_coco.COCO(str(output))
    (category,) = coco.loadCats(coco.getCatIds())
    names = category["keypoints"]
    assert names[:3] == ["L1", "L1-L2", "L2"] and names[-1] == "S1"
    assert len(category["skeleton"]) == len(names) - 1
    study = reviewable.studies[0]
    (image,) = [
        i
        for i in coco.loadImgs(coco.getImgIds())
        if i["sop_instance_uid"] == study.sop_instance_uid
    ]
    assert image["date_captured"] == "2026" and "partition_key" not in image
    png = Image.open(output.parent / image["file_name"])
    assert png.size == (image["width"], image["height"]) and png.mode == "L"
    (annotation,) = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
    points = np.array(annotation["keypoints"]).reshape(-1, 3)
    by_name = dict(zip(names, points, strict=True))
    assert by_name["S1"].tolist() == [0, 0, 0]  # flagged: visibility 0
    assert by_name["L3"][2] == 2 and by_name["L3"][:2] == pytest.approx(study.truth["L3"], abs=1e-3)
    assert annotation["num_keypoints"] == len(names) - 1
    other = [a for a in coco.loadAnns(coco.getAnnIds()) if a["id"] != annotation["id"]][0]
    assert other["num_keypoints"] == len(names) - 2  # L4 and L5 still flagged there

    # The ground truth scored against itself: every image found perfectly.
    results = [{**a, "score": 1.0} for a in json.loads(output.read_text())["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = pycocotools_eval.COCOeval(coco, coco.loadRes(results), "keypoints")
        evaluation.params.kpt_oks_sigmas = np.full(len(names), 0.05)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_full_dates_are_kept_only_when_asked(reviewable, curated, tmp_path):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    document = export_coco(curated, workspace.image, tmp_path / "k.json", dates="keep")
    dates = {i["partition_key"]: i["date_captured"] for i in document["images"]}
    assert dates == {s.partition_key: f"2026-09-0{n + 1}" for n, s in enumerate(reviewable.studies)}
    with pytest.raises(ValueError):
        export_coco(curated, workspace.image, tmp_path / "k.json", dates="month")
