"""Template: the one labelled image, turned into reference features for every landmark."""

import time

import dagster as dg

from labeling_pipeline.anatomy import DomainError, domain_source, load_domain
from labeling_pipeline.defs.labels.schedules import template_condition
from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.imaging.dicom import DicomValidationError, read_label_image
from labeling_pipeline.localization.bundle import (
    TemplateBundle,
    build_named_templates,
    landmark_table,
)
from labeling_pipeline.localization.reference import build_template_reference
from labeling_pipeline.localization.template import (
    DEFAULT_TEMPLATE,
    TemplateError,
    load_template_landmarks,
    named_template_files,
)

# Bumped when how the reference is built changes (with the data version below, Dagster then
# shows the template reference and every study's labels as stale).
TEMPLATE_CODE_VERSION = "1"


def template_version(pipeline: PipelineResource, feature_model: FeatureModelResource) -> str:
    """The data version the template reference has when made now: changes with the template,
    the domain knowledge, the feature model or the reference settings, and nothing else."""
    return pipeline.paths().template_version(
        feature_model.model_name(), feature_model.weights_name(), pipeline.reference_settings()
    )


@dg.asset(
    group_name="template",
    code_version=TEMPLATE_CODE_VERSION,
    automation_condition=template_condition(),
    kinds={"dicom", "pytorch"},
    description=(
        "Reference features of each landmark of the template (`template/template.dcm` with "
        "`template/landmarks.json`), and of every further template in `template/<name>/` "
        "(same region; tried where the default leaves landmarks for review), with the region's "
        "domain knowledge (`domain/<region>.yaml`, else the packaged default)."
    ),
)
def template_reference(
    context: dg.AssetExecutionContext,
    pipeline: PipelineResource,
    feature_model: FeatureModelResource,
) -> dg.Output:
    paths = pipeline.paths()
    try:
        landmarks = load_template_landmarks(paths.template_landmarks)
        image = read_label_image(paths.template_image)
        domain = load_domain(landmarks.region, paths.domain_dir)
    except (TemplateError, DomainError, DicomValidationError) as error:
        raise dg.Failure(f"the template cannot be used: {error}") from error

    started = time.perf_counter()
    extractor = feature_model.extractor()
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    [feature_map] = compute_feature_maps([image], extractor, feature_model.preparation())
    try:
        reference = build_template_reference(
            feature_map, landmarks, domain, pipeline.reference_settings()
        )
    except (TemplateError, ValueError) as error:
        raise dg.Failure(f"the template reference cannot be built: {error}") from error
    # Further templates (template/<name>/): one that cannot be used is reported and left out,
    # the default and the others still label.
    named, problems = named_template_files(paths.template_dir)
    alternatives, unusable = build_named_templates(
        named, domain, extractor, feature_model.preparation(), pipeline.reference_settings()
    )
    problems += unusable
    for problem in problems:
        context.log.warning(f"template/ sub-folder left out: {problem}")
    seconds = time.perf_counter() - started
    if domain_source(landmarks.region, paths.domain_dir) == "packaged":
        context.log.warning(
            f"the data directory has no domain/ folder: the packaged {landmarks.region} "
            "domain knowledge is used"
        )
    context.log.info(
        f"template reference: {len(landmarks.landmarks)} landmarks ({landmarks.region}), "
        f"grid {feature_map.grid_shape} at {feature_map.mm_per_cell:g} mm per cell"
    )
    return dg.Output(
        TemplateBundle(
            reference=reference, landmarks=landmarks, domain=domain, alternatives=alternatives
        ),
        # The same inputs give the same version, so labels made from an earlier materialization
        # with the same inputs do not show as stale after it is made again.
        data_version=dg.DataVersion(template_version(pipeline, feature_model)),
        metadata={
            "region": landmarks.region,
            "landmarks": len(landmarks.landmarks),
            "landmark_table": dg.MetadataValue.md(
                landmark_table(landmarks).to_markdown(index=False)
            ),
            "templates": dg.MetadataValue.json(
                [DEFAULT_TEMPLATE, *(template.name for template in alternatives)]
            ),
            "templates_left_out": dg.MetadataValue.json(problems),
            "feature_model": str(feature_map.settings.get("model", "")),
            "feature_grid": f"{feature_map.grid_shape[0]} x {feature_map.grid_shape[1]}",
            "mm_per_cell": float(feature_map.mm_per_cell),
            "template_digest": paths.inputs_digest()[:16],
            "domain_source": domain_source(landmarks.region, paths.domain_dir),
            "model_load_seconds": round(load_seconds, 3),
            "compute_seconds": round(seconds, 3),
        },
    )
