"""The per-study chain: features, localization and labels of a batch of studies, in one step.

``pixel_features`` (``features.zarr``), ``vertebra_localization`` and ``label_dataset``
(``labels/<partition>.parquet``, ``overlays/<sop_instance_uid>.png``) are three assets of the
graph, made by one step per run: the run's studies (``context.partition_keys``, a batch of a
backfill or one study) are read, their images go through the feature model together (loaded
once per process), and each study is localized and labelled from the stored features. Values
stay in files the assets write themselves; nothing is pickled between steps.
"""

import time
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.ingestion.partitions import (
    FEATURE_MODEL_POOL,
    studies_backfill_policy,
    studies_partitions,
)
from labeling_pipeline.defs.labels.schedules import label_condition
from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
from labeling_pipeline.defs.template.bank import read_template_bank
from labeling_pipeline.features.materialize import materialize_features_batch
from labeling_pipeline.features.settings import FeatureSettingsMismatch
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.dicom import image_key, labelled_rows, study_digest
from labeling_pipeline.imaging.study import StudyImages, read_study_images
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.dataset import label_rows, read_labels, write_labels_partition
from labeling_pipeline.labels.overlay import render_overlay, write_overlay_index
from labeling_pipeline.labels.schema import empty_labels
from labeling_pipeline.localization.bundle import TemplateBundle
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK
from labeling_pipeline.localization.template import DEFAULT_TEMPLATE

# Studies whose images a run holds at once (read, features, labels), whatever its batch size.
STUDIES_PER_CHUNK = 16

# Bumped when what these assets compute changes, so that Dagster shows the studies' labels
# as stale (code version) and `labeling-pipeline backfill` labels them again.
LABEL_CODE_VERSION = "2"

# One tuple, not three module names: the defs loader would take bare specs for assets of their own.
STUDY_ASSET_SPECS = (
    dg.AssetSpec(
        "pixel_features",
        deps=["study_files"],
        group_name="features",
        kinds={"pytorch", "zarr"},
        code_version=LABEL_CODE_VERSION,
        automation_condition=label_condition(),
        description=(
            "Dense features of each labelled image of the study (the catalogued most "
            "mid-sagittal slice or frame of its series), from the pretrained model of "
            "LABELING_FEATURE_MODEL, stored in `features.zarr`. Images whose pixels and feature "
            "settings are unchanged are not computed again."
        ),
    ),
    dg.AssetSpec(
        "vertebra_localization",
        deps=["pixel_features", "template_reference"],
        group_name="localization",
        kinds={"pytorch"},
        code_version=LABEL_CODE_VERSION,
        automation_condition=label_condition(),
        description=(
            "Each template landmark located in each labelled image of the study: the best match "
            "of its reference features within the search regions that the domain knowledge allows; "
            "landmarks outside the spatial criteria are marked needs_review (written with the "
            "labels). Where the default template leaves landmarks for review, the other templates "
            "(`template/<name>/`) and the review bank (`template_bank/`, read at run time) are "
            "tried; the `template` column says which placed each landmark."
        ),
    ),
    dg.AssetSpec(
        "label_dataset",
        deps=["vertebra_localization", "template_reference"],
        group_name="labels",
        kinds={"parquet", "png"},
        code_version=LABEL_CODE_VERSION,
        automation_condition=label_condition(),
        description=(
            "The study's rows of the label dataset: one per (labelled image, template landmark), "
            "x = column and y = row in pixels of the labelled image, status ok or needs_review; "
            "written to `labels/<partition>.parquet`, with `overlays/<sop_instance_uid>.png` for "
            "review (partition key, status and reason drawn; `overlays/index.html` lists them, "
            "flagged first)."
        ),
    ),
)


@dataclass
class BatchReport:
    """Per study of a run's batch: what was done (``studies``), and why a study failed."""

    studies: dict[str, dict] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_seconds(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + seconds, 3)


def _read_batch(
    context: dg.AssetExecutionContext, catalog: pd.DataFrame, keys: list[str], data_dir, report
) -> dict[str, StudyImages]:
    studies: dict[str, StudyImages] = {}
    for key in keys:
        if labelled_rows(catalog, key).empty:
            report.failed[key] = (
                f"the catalog has no image to label for study {key}; materialize dicom_catalog "
                "after adding its files"
            )
            continue
        images, unreadable = read_study_images(catalog, key, data_dir)
        for key_of_file, reason in unreadable:
            context.log.warning(f"{key}: file {key_of_file} (catalog file_key): skipped, {reason}")
        if not images:
            report.failed[key] = f"none of the labelled files of study {key} can be read any more"
            continue
        studies[key] = StudyImages(
            partition_key=key,
            study_digest=study_digest(catalog, key),
            feature_model="",
            images=images,
            unreadable=unreadable,
        )
    return studies


def stop_if_canceled(context: dg.AssetExecutionContext, progress: str) -> None:
    """Stop the step when its run is being canceled (the UI's Terminate, Ctrl-C in
    ``labeling-pipeline``). A batch of studies is one long step, and Dagster acts on a cancel
    only between a step's events: without this check a canceled run went on to its end."""
    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and run.status in (
        dg.DagsterRunStatus.CANCELING,
        dg.DagsterRunStatus.CANCELED,
    ):
        raise dg.DagsterExecutionInterruptedError(f"run canceled: stopped {progress}")


def _label_study(
    study: StudyImages,
    materialized,
    store: FeatureStore,
    template_reference: TemplateBundle,
    settings,
    alternatives: list,
    model: str,
    paths,
    report: BatchReport,
) -> int:
    """Localize and label one study from its stored features: its labels partition, its
    overlays and its entry in ``report``. Returns the template searches run."""
    from labeling_pipeline.localization.study import localize_study

    key = study.partition_key
    study.feature_model = model
    started = time.perf_counter()
    try:
        localization = localize_study(
            store, study, template_reference, settings, alternatives=alternatives
        )
    except FeatureSettingsMismatch as error:
        raise dg.Failure(
            f"{error}. Materialize template_reference and pixel_features again with the "
            "current feature model."
        ) from error
    report.add_seconds("localize", time.perf_counter() - started)
    started = time.perf_counter()
    extra = {"feature_model": model, "strategy": localization.strategy}
    frames = []
    for image, results, placed_by in zip(
        localization.images, localization.results, localization.templates, strict=True
    ):
        frames.append(
            label_rows(
                image,
                key,
                results,
                extra,
                template=template_reference.landmarks,
                template_names={r.name: t for r, t in zip(results, placed_by, strict=True)},
            )
        )
        overlay = paths.overlays_dir / f"{image_key(image.sop_instance_uid)}.png"
        render_overlay(image, frames[-1], overlay, partition_key=key)
    labels = pd.concat(frames, ignore_index=True) if frames else empty_labels()
    write_labels_partition(paths.labels_dir, key, labels)
    report.add_seconds("labels", time.perf_counter() - started)
    statuses = labels["status"].value_counts()
    report.studies[key] = {
        "images": len(study.images),
        "computed": len(materialized.computed),
        "reused": len(materialized.reused),
        "unreadable": len(study.unreadable),
        "landmarks_ok": int(statuses.get(OK, 0)),
        "landmarks_needs_review": int(statuses.get(NEEDS_REVIEW, 0)),
        "templates": {str(k): int(v) for k, v in labels["template"].value_counts().items()},
        "study_digest": study.study_digest,
    }
    return localization.searches


@dg.multi_asset(
    specs=list(STUDY_ASSET_SPECS),
    ins={"template_reference": dg.AssetIn()},
    partitions_def=studies_partitions,
    backfill_policy=studies_backfill_policy,
    pool=FEATURE_MODEL_POOL,
    can_subset=False,
    name="label_studies",
)
def label_studies(
    context: dg.AssetExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
    feature_model: FeatureModelResource,
):
    # The search imports torch: here, in the run, not when the definitions load.
    from labeling_pipeline.localization.study import search_settings

    paths = pipeline.paths()
    keys = list(context.partition_keys)
    if not paths.catalog_path.is_file():
        raise dg.Failure(
            "dicom_catalog has not been materialized for this output directory "
            "(catalog.parquet is missing); materialize it first"
        )
    dicom_catalog = read_catalog(paths.catalog_path)
    try:
        settings = search_settings(pipeline.strategy())
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    report = BatchReport()
    started = time.perf_counter()
    extractor = feature_model.extractor()
    report.add_seconds("model_load", time.perf_counter() - started)
    model = feature_model.model_name()
    store = FeatureStore(paths.features_path)

    started = time.perf_counter()
    # The review bank is read now, not a dependency: adding a reviewed image must not make
    # every labelled study stale (and the bank is made from these labels: a cycle otherwise).
    bank = read_template_bank(
        paths.template_bank_dir, template_reference, extractor, feature_model, pipeline
    )
    for problem in bank.problems:
        context.log.warning(f"template bank: {problem}")
    alternatives = [*template_reference.other_templates(), *bank.templates]
    report.add_seconds("template_bank", time.perf_counter() - started)

    searches = done = 0
    # A chunk of studies at a time: their images, read and through the network together, are
    # held only until the chunk is labelled, so a run's memory does not grow with its batch.
    for first in range(0, len(keys), STUDIES_PER_CHUNK):
        started = time.perf_counter()
        chunk = keys[first : first + STUDIES_PER_CHUNK]
        studies = _read_batch(context, dicom_catalog, chunk, paths.data_dir, report)
        report.add_seconds("read", time.perf_counter() - started)
        started = time.perf_counter()
        materialized = materialize_features_batch(
            store,
            {key: study.images for key, study in studies.items()},
            extractor,
            feature_model.preparation(),
            between_batches=lambda: stop_if_canceled(context, "while computing features"),
        )
        report.add_seconds("features", time.perf_counter() - started)
        for key, study in studies.items():
            stop_if_canceled(context, f"after {done} of {len(keys)} studies")
            searches += _label_study(
                study,
                materialized[key],
                store,
                template_reference,
                settings,
                alternatives,
                model,
                paths,
                report,
            )
            done += 1
        del studies, materialized
    index = write_overlay_index(paths.overlays_dir, read_labels(paths.labels_dir))
    if report.failed:
        # The other studies' files are written; the batch is materialized only as a whole, so a
        # retry (features reused) finishes it once the named studies are fixed or withdrawn.
        raise dg.Failure(
            "; ".join(report.failed.values()),
            metadata={"failed_studies": dg.MetadataValue.json(report.failed)},
        )
    images = sum(s["images"] for s in report.studies.values())
    context.log.info(f"{len(keys)} studies, {images} images labelled ({report.seconds})")
    # Dagster records every metadata entry once per study of the batch: the per-study table
    # goes on label_dataset alone (what the sensor and the command line read), not three times.
    common = {
        "studies_in_run": len(keys),
        "images_in_run": images,
        "seconds": dg.MetadataValue.json(report.seconds),
    }
    yield dg.MaterializeResult(
        asset_key="pixel_features",
        metadata={
            **common,
            "feature_model": model,
            "computed": sum(s["computed"] for s in report.studies.values()),
            "reused": sum(s["reused"] for s in report.studies.values()),
        },
    )
    yield dg.MaterializeResult(
        asset_key="vertebra_localization",
        metadata={
            **common,
            "strategy": settings.strategy,
            # The templates tried where the default left landmarks for review, and the searches
            # that took (one per image and template tried).
            "templates": dg.MetadataValue.json(
                [DEFAULT_TEMPLATE, *(template.name for template in alternatives)]
            ),
            "template_bank_version": bank.version,
            "template_searches": searches,
        },
    )
    ok = sum(s["landmarks_ok"] for s in report.studies.values())
    review = sum(s["landmarks_needs_review"] for s in report.studies.values())
    yield dg.MaterializeResult(
        asset_key="label_dataset",
        metadata={
            **common,
            "studies": dg.MetadataValue.json(report.studies),
            "landmarks_ok": ok,
            "landmarks_needs_review": review,
            # Names under the output directory, not paths (run metadata holds no paths).
            "labels_files": ", ".join(f"labels/{key}.parquet" for key in keys[:8])
            + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""),
            "overlays_index": dg.MetadataValue.path(str(index)),
        },
    )


def study_metadata(metadata: dict, partition_key: str) -> dict:
    """One study's entry of a batch materialization's ``studies`` metadata ({} when absent)."""
    value = metadata.get("studies")
    studies = getattr(value, "value", value) or {}
    return dict(studies.get(partition_key, {}))
