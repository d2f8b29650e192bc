"""The review bank: fully reviewed images as extra templates (``<output>/template_bank/``).

``template_bank`` writes it from the labels and the review decisions (the review app also
refreshes it after every save). The label step reads it when it runs
(:func:`read_template_bank`) rather than depending on the asset: the bank is made from the
labels (a dependency would be a cycle), and a new reviewed image must not make every labelled
study stale. It is used by every study labelled from then on: new ones, and any study labelled
again (``labeling-pipeline run`` labels every study; automation labels the still-flagged ones
again after each change of the bank, ``defs/labels/schedules.py``).
"""

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from labeling_pipeline.corrections import curate_labels, read_corrections
from labeling_pipeline.corrections.bank import (
    BANK_LIMIT,
    BANK_PREFIX,
    bank_version,
    refresh_template_bank,
)
from labeling_pipeline.defs.resources import FeatureModelResource, PipelineResource
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.dataset import read_labels
from labeling_pipeline.localization.bundle import (
    NamedTemplate,
    TemplateBundle,
    build_named_templates,
)
from labeling_pipeline.localization.template import TemplateFiles, named_template_files

if TYPE_CHECKING:  # the extractors import torch: not when the definitions load
    from labeling_pipeline.features.extractors import FeatureExtractor


@dataclass
class BankTemplates:
    """The bank's templates as localization uses them, what could not be used, its version."""

    templates: list[NamedTemplate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    version: str = ""


# References of bank entries built in this process, by entry content and feature settings:
# a run labels many batches with the same bank, and the entries rarely change.
_built: dict[tuple, NamedTemplate] = {}
_built_lock = threading.Lock()


def _entry_key(files: TemplateFiles, settings: tuple) -> tuple:
    digest = hashlib.sha256()
    for path in (files.image, files.landmarks):
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return (files.name, digest.hexdigest(), *settings)


def read_template_bank(
    bank_dir: Path,
    template: TemplateBundle,
    extractor: "FeatureExtractor",
    feature_model: FeatureModelResource,
    pipeline: PipelineResource,
) -> BankTemplates:
    """The bank's entries as templates (``bank/<name>``), built once per process and content."""
    found, problems = named_template_files(bank_dir, prefix=BANK_PREFIX)
    reference_settings = pipeline.reference_settings()
    settings = (
        feature_model.model_name(),
        feature_model.weights_name(),
        repr(reference_settings),
        template.domain.region,
        repr(template.domain),
    )
    templates: list[NamedTemplate] = []
    to_build: list[tuple[tuple, TemplateFiles]] = []
    used: set[tuple] = set()
    with _built_lock:
        for files in found:
            try:
                key = _entry_key(files, settings)
            except OSError as error:  # removed by a refresh meanwhile
                problems.append(f"{files.name!r}: {error}")
                continue
            used.add(key)
            if key in _built:
                templates.append(_built[key])
            else:
                to_build.append((key, files))
        if to_build:
            built, unusable = build_named_templates(
                [files for _, files in to_build],
                template.domain,
                extractor,
                feature_model.preparation(),
                reference_settings,
            )
            problems += unusable
            by_name = {item.name: item for item in built}
            for key, files in to_build:
                if files.name in by_name:
                    _built[key] = by_name[files.name]
                    templates.append(by_name[files.name])
        for key in [key for key in _built if key not in used]:
            del _built[key]  # evicted or changed entries: the cache stays as small as the bank
    templates.sort(key=lambda item: item.name)
    return BankTemplates(templates, problems, bank_version(bank_dir))


@dg.asset(
    group_name="template",
    kinds={"dicom", "json"},
    deps=["curated_labels", "review_corrections"],
    description=(
        "The review bank `template_bank/<name>/{template.dcm,landmarks.json}`: up to "
        f"{BANK_LIMIT} fully reviewed images (every landmark ok, confirmed, corrected or not in "
        "view; the newest reviews kept) as extra templates. The label step reads it when it "
        "runs and tries it where the default template leaves landmarks for review; it is not "
        "an input of the label assets, so a new entry does not make labelled studies stale."
    ),
)
def template_bank(
    context: dg.AssetExecutionContext,
    template_reference: TemplateBundle,
    pipeline: PipelineResource,
) -> dg.Output:
    paths = pipeline.paths()
    domain = template_reference.domain
    curated = curate_labels(
        read_labels(paths.labels_dir), read_corrections(paths.corrections_dir), domain.order
    )
    catalog = read_catalog(paths.catalog_path)
    refreshed = refresh_template_bank(
        paths.template_bank_dir,
        curated,
        catalog,
        paths.data_dir,
        template_reference.landmarks.region,
        domain.order,
    )
    for problem in refreshed.problems:
        context.log.warning(problem)
    return dg.Output(
        None,
        data_version=dg.DataVersion(bank_version(paths.template_bank_dir)),
        metadata={
            "entries": dg.MetadataValue.json(refreshed.entries),
            "written": len(refreshed.written),
            "removed": len(refreshed.removed),
            "problems": dg.MetadataValue.json(refreshed.problems),
            "limit": BANK_LIMIT,
            "bank_dir": dg.MetadataValue.path(str(paths.template_bank_dir)),
        },
    )
