"""When studies are labelled: declarative automation conditions, and the nightly pass.

Dagster's automation (the ``label_automation`` sensor, ``defs/ingestion/sensors.py``) evaluates
these on each tick and requests what they select, batched by the assets' backfill policy:

- **new studies**: a study partition that appears (``dicom_catalog`` registers it);
- **stale studies**: its files changed (a new data version of its ``study_files`` partition),
  the template reference changed (a new *data* version: the template, ``domain/`` or the feature
  model changed; made again from the same inputs it keeps its version and nothing is stale), or
  the labelling code changed (``LABEL_CODE_VERSION``);
- only studies from ``incoming/`` and the DICOMweb server (:data:`WATCHED_SOURCES`, which the
  partition key names: ``incoming-...``, ``dicomweb-...``): archive studies are labelled by
  backfills (the UI, ``labeling-pipeline backfill``), and show as
  unsynced in the UI when stale;
- **still-flagged studies once the review bank has learned**: a study labelled with landmarks
  left for review before the bank (``template_bank/``, fully reviewed images) last changed is
  labelled again, once per change, so the new examples are tried where they may help;
- **the nightly pass** (:data:`NIGHTLY_CRON`, 02:00): the catalog and the template reference are
  made again, so files changed in any folder and a changed template, domain knowledge or model
  are picked up; the studies this makes stale are then labelled by the conditions above.
"""

from __future__ import annotations

import dagster as dg

from labeling_pipeline.corrections.bank import studies_to_retry
from labeling_pipeline.defs.settings import PipelinePaths
from labeling_pipeline.imaging.dicom import key_source
from labeling_pipeline.imaging.dicomweb import DicomwebConfigError, DicomwebSettings

# Sources whose studies automation labels as they arrive (archive/ is for backfills).
WATCHED_SOURCES = ("incoming", "dicomweb")

NIGHTLY_CRON = "0 2 * * *"

STUDY_FILES = dg.AssetSelection.assets("study_files")
TEMPLATE_KEY = dg.AssetKey("template_reference")
TEMPLATE = dg.AssetSelection.assets(TEMPLATE_KEY)
LABELS = dg.AssetSelection.assets("label_dataset")
REVIEW = dg.AssetSelection.assets("review_corrections")


class FromWatchedSource(dg.AutomationCondition):
    """True for the study partitions whose key names a watched source (``incoming-...``,
    ``dicomweb-...``; a study with files in both incoming/ and archive/ is keyed ``incoming``).

    The key alone decides (``<source>-YYYYMMDD-<8 hex>``): nothing is read from disk on a tick.
    Keys of the old format (``YYYYMMDD-<8 hex>``, left in an instance made before) name no
    source and are never requested.
    """

    @property
    def name(self) -> str:
        return "from_watched_source"

    @property
    def description(self) -> str:
        return (
            "Study key starts with incoming- or dicomweb- (files in incoming/ or from the server)"
        )

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        keys = {
            key
            for key in context.candidate_subset.expensively_compute_partition_keys()
            if key_source(key) in WATCHED_SOURCES
        }
        return dg.AutomationResult(
            context,
            true_subset=context.candidate_subset.compute_intersection_with_partition_keys(keys),
        )


class TemplateReferenceMade(dg.AutomationCondition):
    """True once ``template_reference`` has been materialized in this instance.

    ``pixel_features`` does not depend on the template, but it is made in one step with the
    assets that do: without this, a new study would start a run that can only fail.
    """

    @property
    def name(self) -> str:
        return "template_reference_made"

    @property
    def description(self) -> str:
        return "template_reference has been materialized"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        made = instance.get_latest_materialization_event(TEMPLATE_KEY) is not None
        subset = context.candidate_subset if made else context.get_empty_subset()
        return dg.AutomationResult(context, true_subset=subset)


class FlaggedBeforeBankChange(dg.AutomationCondition):
    """True for the studies whose labels have landmarks left for review and were written before
    the review bank last changed (``labels/`` and ``template_bank/`` of the output directory of
    the ``LABELING_*`` variables the code location runs with).

    The bank is not an input of the label assets (a new entry must not make every labelled
    study stale), so Dagster's own staleness cannot see it: the files can.
    """

    @property
    def name(self) -> str:
        return "flagged_before_bank_change"

    @property
    def description(self) -> str:
        return "Labels left for review were made before the review bank last changed"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        paths = PipelinePaths.resolve(None, None)
        keys = studies_to_retry(paths.labels_dir, paths.template_bank_dir)
        return dg.AutomationResult(
            context,
            true_subset=context.candidate_subset.compute_intersection_with_partition_keys(keys),
        )


def label_condition() -> dg.AutomationCondition:
    """New and stale studies from the watched sources (see the module's docstring)."""
    new_study = dg.AutomationCondition.newly_missing()
    files_changed = (
        dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated())
        .allow(STUDY_FILES)
        .with_label("study files changed")
    )
    template_changed = (
        dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())
        .allow(TEMPLATE)
        .with_label("template reference changed")
    )
    code_changed = dg.AutomationCondition.code_version_changed()
    bank_learned = FlaggedBeforeBankChange()
    return (
        FromWatchedSource()
        & TemplateReferenceMade()
        & (
            new_study | files_changed | template_changed | code_changed | bank_learned
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("label new and stale studies")


def follow_labels_condition() -> dg.AutomationCondition:
    """Curated labels and SRs: made in the same run as the study's labels (or after them).

    Review decisions do not trigger it (every study depends on them; the next labelling or
    ``curated_labels`` materialized by hand publishes them), and their folder may never have
    been observed.
    """
    return (
        dg.AutomationCondition.any_deps_updated().ignore(REVIEW | TEMPLATE).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing().ignore(REVIEW)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after the study's labels")


def pacs_condition() -> dg.AutomationCondition | None:
    """:func:`follow_labels_condition` when SRs are stored on the DICOMweb server
    (``LABELING_DICOMWEB_URL`` and ``LABELING_DICOMWEB_STORE=1`` when the code location loads),
    else none: with the store off the asset is never materialized, and a backfill that asks for
    it would end as failed (measured: every automation backfill did) and ask again."""
    try:
        settings = DicomwebSettings.from_env()
    except DicomwebConfigError:
        return None  # reported by the asset itself when it runs
    return follow_labels_condition() if settings is not None and settings.store_enabled else None


def nightly_condition() -> dg.AutomationCondition:
    """The catalog and the template reference are made again at 02:00 (and the template when it
    is missing); what that makes stale is labelled by :func:`label_condition`."""
    return (
        dg.AutomationCondition.cron_tick_passed(NIGHTLY_CRON).since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("nightly at 02:00")


def template_condition() -> dg.AutomationCondition:
    """Nightly, and whenever it is missing (a new instance); not again after a failed build
    (a template that cannot be used) until the next night or a materialization by hand."""
    missing = (
        dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.execution_failed()
    ).with_label("missing")
    return (nightly_condition() | missing).with_label("nightly at 02:00, or when missing")
