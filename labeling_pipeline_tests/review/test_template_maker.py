import json

import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.localization.template import TemplateError, load_template_landmarks
from labeling_pipeline.review.template_maker import build_landmarks, click_order, save_template
from labeling_pipeline.review.workspace import ReviewWorkspace


def test_click_order_runs_head_to_feet_with_each_disc_below_its_vertebra():
    names = [item["name"] for item in click_order(load_domain("lumbar"))]
    assert names[names.index("L1") : names.index("S1") + 1] == [
        "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5", "L5", "L5-S1", "S1",
    ]  # fmt: skip
    cervical = [item["name"] for item in click_order(load_domain("cervical"))]
    assert cervical.index("C2") < cervical.index("C2-C3") < cervical.index("C3")


def test_saved_template_is_valid_and_the_old_one_is_kept(reviewable, tmp_path):
    workspace = ReviewWorkspace(reviewable.data_dir, reviewable.output_dir)
    study = reviewable.studies[0]
    path, frame = workspace.source_file(study.sop_instance_uid)
    domain = load_domain("lumbar")
    clicked = [{"name": n, "x": x, "y": y} for n, (x, y) in study.truth.items()]
    landmarks = build_landmarks("lumbar", clicked, domain)
    template_dir = tmp_path / "template"
    template_dir.mkdir()
    (template_dir / "landmarks.json").write_text('{"region": "lumbar", "landmarks": []}')
    written = save_template(template_dir, path, frame, landmarks, tmp_path / "history")
    saved = load_template_landmarks(written["landmarks"])
    assert saved.names() == list(study.truth) and saved.by_name()["L3"].kind == "vertebra"
    assert saved.by_name()["L3-L4"].kind == "disc"
    assert (template_dir / "template.dcm").read_bytes() == path.read_bytes()
    assert json.loads((written["previous"] / "landmarks.json").read_text())["landmarks"] == []
    with pytest.raises(TemplateError, match="not part of the lumbar region"):
        build_landmarks("lumbar", [{"name": "C3", "x": 1, "y": 1}], domain)
    outside = build_landmarks("lumbar", [{"name": "L1", "x": 999, "y": 1}], domain)
    with pytest.raises(TemplateError, match="outside the image"):
        save_template(template_dir, path, frame, outside, tmp_path / "history")
