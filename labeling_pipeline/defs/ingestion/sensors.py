"""Label new studies as they arrive in ``incoming/`` or on the DICOMweb server.

Each tick first compares a cheap fingerprint of ``incoming/`` (paths, sizes, modification
times) with the one the latest ``dicom_catalog`` was built from. When they differ it asks for a
catalog run (which validates the new files and registers their studies); once the catalog is
current it registers any missing study partitions and asks for one ``label_study_job`` run per
incoming study whose files differ from those its labels were made from. With
``LABELING_DICOMWEB_URL`` set, a current catalog is also checked against the server (one QIDO
search over the look-back window): new or failed server studies ask for a catalog run, which
retrieves them; studies from the server are then labelled like incoming ones.
"""

import hashlib

import dagster as dg

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.jobs import catalog_and_template_job, label_study_job
from labeling_pipeline.defs.labels.assets import study_metadata
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.defs.runs import fail_runs_of_dead_processes
from labeling_pipeline.imaging.dicom import labelled_partition_keys, study_digest, tree_fingerprint
from labeling_pipeline.imaging.dicomweb import (
    DateRange,
    DicomwebError,
    DicomwebSettings,
    StudyCache,
    cache_root,
    pending_studies,
)
from labeling_pipeline.labels.catalog import read_catalog

# Sources whose studies the sensor labels as they arrive (archive/ is for backfills).
WATCHED_SOURCES = ("incoming", "dicomweb")


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
    return dg.RunRequest(
        job_name=catalog_and_template_job.name,
        run_key=f"dicomweb-{digest}",
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
    jobs=[catalog_and_template_job, label_study_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Catalogues new files in incoming/, registers their studies as partitions and "
    "labels each new or changed study.",
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
        return dg.RunRequest(
            job_name=catalog_and_template_job.name,
            run_key=f"catalog-{fingerprint.digest[:16]}",
            tags={"labeling/trigger": "new_study_sensor"},
        )

    server = _server_request(context, paths.data_dir)
    if server is not None:
        return server
    catalog = read_catalog(paths.catalog_path)
    incoming = catalog[catalog["source"].isin(WATCHED_SOURCES)]
    keys = labelled_partition_keys(incoming)
    known = set(context.instance.get_dynamic_partitions(studies_partitions.name))
    missing = [key for key in keys if key not in known]
    requests = []
    for key in keys:
        digest = study_digest(catalog, key)
        if labelled_digest(context.instance, key) == digest:
            continue  # already labelled from exactly these files
        requests.append(
            dg.RunRequest(
                job_name=label_study_job.name,
                partition_key=key,
                run_key=f"label-{key}-{digest[:16]}",
                tags={"labeling/trigger": "new_study_sensor"},
            )
        )
    if not requests and not missing:
        return dg.SkipReason(f"all {len(keys)} incoming studies are labelled and current")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[studies_partitions.build_add_request(missing)]
        if missing
        else [],
    )
