"""The template assets in Dagster: further templates in ``template/<name>/``, what is left out
and why, and the review bank read by the label step (built once per content and process)."""

import json
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
from labeling_pipeline.defs.settings import PipelinePaths
from labeling_pipeline.defs.template.assets import template_reference
from labeling_pipeline.defs.template.bank import read_template_bank
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.synthetic.dicom_writer import StudyInfo
from labeling_pipeline.synthetic.families import family_overrides
from labeling_pipeline.synthetic.phantom import random_params
from labeling_pipeline.synthetic.sample_data import template_params, write_template
from labeling_pipeline_tests.defs.helpers import pipeline_resources

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("templates") / "data"
    write_template(template_params(3), data / "template", StudyInfo("t/default", 1, "20260101"))
    rng = np.random.default_rng([99, 0, 7])
    write_template(
        random_params(rng, **family_overrides("fat", rng)),
        data / "template" / "fat",
        StudyInfo("t/fat", 2, "20260101"),
    )
    # Left out, with the reason: a template of another region, and one without its image.
    shutil.copytree(data / "template" / "fat", data / "template" / "neck")
    document = json.loads((data / "template" / "neck" / "landmarks.json").read_text())
    (data / "template" / "neck" / "landmarks.json").write_text(
        json.dumps({**document, "region": "cervical"})
    )
    (data / "template" / "half").mkdir()
    shutil.copy(data / "template" / "landmarks.json", data / "template" / "half")
    return data


def _resources(data: Path, output: Path) -> dict:
    pipeline = PipelineResource(data_dir=str(data), output_dir=str(output))
    return pipeline_resources(
        pipeline, feature_model=FeatureModelResource(model="efficientnet-lite0")
    )


def test_further_templates_are_built_and_unusable_ones_reported(data_dir, tmp_path):
    resources = _resources(data_dir, tmp_path / "outputs")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [template_reference], instance=instance, resources=resources, run_config=QUIET
        )
        assert result.success
        [made] = result.asset_materializations_for_node("template_reference")
        bundle: TemplateBundle = result.output_for_node("template_reference")
    assert made.metadata["templates"].value == ["default", "fat"]
    left_out = made.metadata["templates_left_out"].value
    assert len(left_out) == 2
    assert any("'half'" in problem and "template.dcm" in problem for problem in left_out)
    assert any("'neck'" in problem and "cervical" in problem for problem in left_out)
    [fat] = bundle.other_templates()
    assert fat.name == "fat" and fat.reference.region == "lumbar"
    assert fat.reference.feature_settings == bundle.reference.feature_settings
    # The data version follows the further templates too.
    paths = PipelinePaths.resolve(str(data_dir), str(tmp_path / "outputs"))
    before = paths.template_version("model")
    (data_dir / "template" / "fat" / "landmarks.json").touch()
    assert paths.template_version("model") == before  # same content, same version
    assert str(data_dir / "template" / "fat" / "template.dcm") in map(str, paths.template_files())


def test_the_bank_is_built_once_per_content(data_dir, tmp_path):
    resources = _resources(data_dir, tmp_path / "outputs")
    with dg.instance_for_test() as instance:
        bundle = dg.materialize(
            [template_reference], instance=instance, resources=resources, run_config=QUIET
        ).output_for_node("template_reference")
    bank_dir = tmp_path / "outputs" / "template_bank"
    shutil.copytree(data_dir / "template" / "fat", bank_dir / "reviewed-0123456789ab")
    extractor = load_extractor()
    args = (bundle, extractor, resources["feature_model"], resources["pipeline"])
    first = read_template_bank(bank_dir, *args)
    again = read_template_bank(bank_dir, *args)
    assert [t.name for t in first.templates] == ["bank/reviewed-0123456789ab"]
    assert first.problems == [] and first.version == again.version
    assert again.templates[0] is first.templates[0]  # not built again
    landmarks = bank_dir / "reviewed-0123456789ab" / "landmarks.json"
    document = json.loads(landmarks.read_text())
    document["landmarks"] = document["landmarks"][:-1]
    landmarks.write_text(json.dumps(document))
    changed = read_template_bank(bank_dir, *args)
    assert changed.templates[0] is not first.templates[0]
    assert len(changed.templates[0].landmarks.landmarks) == len(document["landmarks"])
    assert changed.version != first.version
    assert read_template_bank(tmp_path / "nothing", *args).templates == []
