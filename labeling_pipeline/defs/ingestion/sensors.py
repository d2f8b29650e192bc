"""What automation conditions cannot see: files arriving in ``incoming/`` or on the DICOMweb server.

``new_study_sensor`` compares, on each tick, a cheap fingerprint of ``incoming/`` (paths, sizes,
modification times) with the one the latest ``dicom_catalog`` was built from; when they differ it
asks for a ``dicom_catalog`` run, which validates the files, registers a ``studies`` partition per
new study and records a new data version of ``study_files`` for each new or changed study. With
``LABELING_DICOMWEB_URL`` set, a current catalog is also checked against the server (one QIDO
search over the look-back window): new or failed server studies ask for a catalog run, which
retrieves them. It also registers partitions the instance lost, and marks failed the runs whose
process died.

Labelling is declarative (``label_automation``, below; the conditions are in
``defs/labels/schedules.py``): new and stale studies of ``incoming/`` and the server are
requested as one backfill per tick, which the study assets' backfill policy cuts into runs of up
to ``STUDIES_PER_RUN`` studies.
"""

import hashlib

import dagster as dg

from labeling_pipeline.defs.ingestion.partitions import registration_order, studies_partitions
from labeling_pipeline.defs.jobs import catalog_and_template_job
from labeling_pipeline.defs.labels.assets import study_metadata
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.defs.runs import fail_runs_of_dead_processes
from labeling_pipeline.imaging.dicom import tree_fingerprint
from labeling_pipeline.imaging.dicomweb import (
    DateRange,
    DicomwebError,
    DicomwebSettings,
    StudyCache,
    cache_root,
    pending_studies,
)
from labeling_pipeline.labels.catalog import read_catalog


def _server_request(context: dg.SensorEvaluationContext, data_dir) -> dg.RunRequest | None:
    """A catalog run when the DICOMweb server has studies the cache has not got (or failed to
    get); None when no server is configured or nothing is pending."""
    settings = DicomwebSettings.from_env()
    if settings is None:
        return None
    cache = StudyCache(cache_root(data_dir), settings.cache_limit_bytes)
    try:
        pending = pending_studies(settings, cache, DateRange.lookback(settings.lookback_days))
    except DicomwebError as error:
        context.log.warning(f"DICOMweb server {settings.server_url}: {error.message}")
        return None
    if not pending:
        return None
    digest = hashlib.sha256("\n".join(pending).encode()).hexdigest()[:16]
    return _catalog_request(f"dicomweb-{digest}")


def _catalog_request(run_key: str) -> dg.RunRequest:
    # Only the catalog: the template reference is made nightly or when missing (automation),
    # not on every new file (it loads the feature model).
    return dg.RunRequest(
        job_name=catalog_and_template_job.name,
        asset_selection=[CATALOG_KEY],
        run_key=run_key,
        tags={"labeling/trigger": "new_study_sensor"},
    )


CATALOG_KEY = dg.AssetKey("dicom_catalog")
LABELS_KEY = dg.AssetKey("label_dataset")


def _metadata_text(event: dg.EventLogEntry | None, key: str) -> str | None:
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(key)
    return None if value is None else str(value.value)


def labelled_digest(instance: dg.DagsterInstance, partition_key: str) -> str | None:
    """The study digest recorded by the latest ``label_dataset`` of a partition, if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=LABELS_KEY, asset_partitions=[partition_key]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].event_log_entry.asset_materialization
    if materialization is None:
        return None
    # Batch runs record every study of the batch under "studies"; older runs "study_digest".
    study = study_metadata(dict(materialization.metadata), partition_key)
    return study.get("study_digest") or _metadata_text(records[0].event_log_entry, "study_digest")


@dg.sensor(
    name="new_study_sensor",
    jobs=[catalog_and_template_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Asks for a dicom_catalog run when the files in incoming/ (or the DICOMweb "
    "server's studies) change, and registers study partitions the instance lost. Labelling "
    "the new and changed studies is left to label_automation.",
)
def new_study_sensor(
    context: dg.SensorEvaluationContext, pipeline: PipelineResource
) -> dg.SensorResult | dg.SkipReason | dg.RunRequest:
    # A run whose process died would hold a queue slot for good: fail it first.
    for run_id in fail_runs_of_dead_processes(context.instance):
        context.log.warning(f"run {run_id}: its process is gone; marked failed")
    paths = pipeline.paths()
    fingerprint = tree_fingerprint(paths.incoming_dir)
    latest = context.instance.get_latest_materialization_event(CATALOG_KEY)
    current = (
        _metadata_text(latest, "incoming_fingerprint") == fingerprint.digest
        and _metadata_text(latest, "data_dir_digest") == paths.data_dir_digest()
    )
    if not current:
        if fingerprint.files == 0 and latest is None and DicomwebSettings.from_env() is None:
            return dg.SkipReason(f"no files in {paths.incoming_dir} yet")
        # The same run key for the same listing: a queued catalog run is not asked for twice.
        return _catalog_request(f"catalog-{fingerprint.digest[:16]}")

    server = _server_request(context, paths.data_dir)
    if server is not None:
        return server
    known = set(context.instance.get_dynamic_partitions(studies_partitions.name))
    catalog = read_catalog(paths.catalog_path)
    missing = [key for key in registration_order(catalog) if key not in known]
    if not missing:
        return dg.SkipReason("the catalog is current; label_automation labels what it made stale")
    return dg.SensorResult(
        dynamic_partitions_requests=[studies_partitions.build_add_request(missing)]
    )


# Declared (not Dagster's default automation sensor) to run in the code location: the
# FromWatchedSource condition is a class of this code (it reads the source from the key).
# Batches: one backfill per tick, cut into runs by the study assets' backfill policy (up to
# STUDIES_PER_RUN contiguous partitions each).
label_automation = dg.AutomationConditionSensorDefinition(
    name="label_automation",
    target=dg.AssetSelection.all(),
    use_user_code_server=True,
    emit_backfills=True,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    run_tags={"labeling/trigger": "label_automation"},
    description="Labels new and stale studies of incoming/ and the DICOMweb server (their files, "
    "the template reference or the code changed), and makes the catalog and template reference "
    "again every night at 02:00 (conditions in defs/labels/schedules.py).",
)
