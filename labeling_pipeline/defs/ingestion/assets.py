"""Ingestion: every DICOM file under ``incoming/`` and ``archive/`` (and, with
``LABELING_DICOMWEB_URL`` set, the studies of a DICOMweb server, retrieved into ``dicomweb/``
first), catalogued, one partition per study."""

import time

import dagster as dg

from labeling_pipeline.defs.ingestion.partitions import (
    SOURCE_ORDER,
    STUDIES_PARTITION_NAME,
    registration_order,
    selection_text,
    studies_partitions,
    study_sources,
)
from labeling_pipeline.defs.labels.schedules import nightly_condition
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.defs.settings import image_limits_from_environment
from labeling_pipeline.imaging.dicom import (
    LEGACY_PARTITION_KEY,
    CatalogOutcome,
    labelled_partition_keys,
    rejection_summary,
    scan_data_dir,
    scan_is_complete,
    study_digests,
    study_summary,
    tree_fingerprint,
)
from labeling_pipeline.imaging.dicomweb import (
    DicomwebConfigError,
    DicomwebError,
    DicomwebSettings,
    cache_root,
    sync_data_dir,
    with_server_urls,
)
from labeling_pipeline.labels.catalog import read_catalog, write_catalog
from labeling_pipeline.labels.reconcile import retire_moved_partitions
from labeling_pipeline.locks import exclusive_lock, shared_lock_path

STUDY_FILES_KEY = dg.AssetKey("study_files")
DATA_VERSION_TAG = "dagster/data_version"  # the tag that carries an observation's version


@dg.observable_source_asset(
    name="study_files",
    partitions_def=studies_partitions,
    group_name="ingestion",
    tags={"dagster/kind/dicom": ""},  # what `kinds` sets on other assets
    required_resource_keys={"pipeline"},
    description="The DICOM files of each study, as `catalog.parquet` lists them: one data "
    "version per study partition (a digest of its files' paths, contents and outcomes). "
    "`dicom_catalog` records a new version for each new or changed study (with its source: "
    "incoming, archive or dicomweb), so only that study's labels show as stale, and "
    "automation labels it again when it is an incoming or server study.",
)
def study_files(context: dg.AssetExecutionContext) -> dg.DataVersionsByPartition:
    path = context.resources.pipeline.paths().catalog_path
    if not path.is_file():
        raise dg.Failure("catalog.parquet is missing; materialize dicom_catalog first")
    return dg.DataVersionsByPartition(
        {key: dg.DataVersion(digest) for key, digest in study_digests(read_catalog(path)).items()}
    )


def _sync_dicomweb(context: dg.AssetExecutionContext, data_dir) -> dict:
    """Retrieve new server studies into ``data_dir/dicomweb`` when a server is configured; run
    metadata about it (counts, the credential-free URL). A server that cannot be searched is
    reported and the folders (and the studies cached before) are still catalogued."""
    try:
        settings = DicomwebSettings.from_env()
    except DicomwebConfigError as error:
        raise dg.Failure(f"DICOMweb settings: {error}") from error
    if settings is None:
        return {}
    metadata: dict = {"dicomweb_server": settings.server_url}
    try:
        report = sync_data_dir(settings, data_dir)
    except DicomwebError as error:
        context.log.warning(f"DICOMweb server {settings.server_url}: {error.message}")
        metadata["dicomweb_error"] = error.message
        return metadata
    counts = report.counts()
    failed = report.by_status("failed")
    context.log.info(f"DICOMweb {settings.server_url} {report.dates.query()}: {counts}")
    metadata["dicomweb_sync"] = dg.MetadataValue.json(
        {
            "dates": report.dates.query(),
            **counts,
            "failed_reasons": sorted({o.reason for o in failed}),
        }
    )
    return metadata


@dg.asset(
    group_name="ingestion",
    io_manager_key="catalog_io_manager",
    kinds={"dicom", "parquet"},
    automation_condition=nightly_condition(),
    description=(
        "Every file under the data directory's incoming/ and archive/ (and dicomweb/, studies "
        "retrieved from LABELING_DICOMWEB_URL first), validated, with its "
        "outcome (labelled, accepted, rejected and why), written to catalog.parquet. One image "
        "per series is chosen for labelling; each study with one becomes a 'studies' partition, "
        "registered with the other new studies of its source (archive, then dicomweb, then "
        "incoming), so each source is a block of the partition lists; the metadata names the "
        "blocks (archive_partitions, incoming_partitions). Made again nightly at 02:00."
    ),
)
def dicom_catalog(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.Output:
    paths = pipeline.paths()
    try:
        limits = image_limits_from_environment()
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    if not paths.data_dir.is_dir():
        raise dg.Failure("the data directory does not exist")
    # Fingerprint before scanning: files that change during the scan make the sensor rescan.
    incoming = tree_fingerprint(paths.incoming_dir)
    dicomweb = _sync_dicomweb(context, paths.data_dir)
    started = time.perf_counter()
    try:
        # One scan of both folders: a study or SOP instance present in both is labelled once.
        catalog = scan_data_dir(paths.data_dir, limits=limits).catalog_frame()
    except ValueError as error:  # e.g. incoming is a file, not a folder
        raise dg.Failure(f"cannot scan the data directory: {error}") from error
    catalog = with_server_urls(catalog, cache_root(paths.data_dir))
    scan_seconds = time.perf_counter() - started
    with exclusive_lock(shared_lock_path(paths.output_dir)):  # one writer of the shared file
        before = (
            study_digests(read_catalog(paths.catalog_path)) if paths.catalog_path.is_file() else {}
        )
        write_catalog(paths.catalog_path, catalog)
    # Each new or changed study gets a new data version of its files (study_files): only its
    # labels become stale, not every study's as a new catalog would make them.
    changed = {key: d for key, d in study_digests(catalog).items() if before.get(key) != d}
    sources = study_sources(catalog)
    for key, digest in changed.items():
        context.log_event(
            dg.AssetObservation(
                asset_key=STUDY_FILES_KEY,
                partition=key,
                tags={DATA_VERSION_TAG: digest},
                metadata={"source": sources.get(key, "")},  # shown with the partition in the UI
            )
        )

    keys = labelled_partition_keys(catalog)
    known = set(context.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    # Grouped by source: each source's studies stay contiguous ranges in the UI and in batches.
    new_keys = [key for key in registration_order(catalog) if key not in known]
    if new_keys:
        context.instance.add_dynamic_partitions(STUDIES_PARTITION_NAME, new_keys)
    # Keys of the format before the source was part of them: no scan makes them again, so
    # they leave the UI's lists (their files are withdrawn by `labeling-pipeline run`).
    legacy = sorted(key for key in known if LEGACY_PARTITION_KEY.match(key))
    for key in legacy:
        context.instance.delete_dynamic_partition(STUDIES_PARTITION_NAME, key)
    # A study whose files moved (incoming/ -> archive/) has a new key: its old key's labels,
    # curated rows and features go now, so the label dataset never holds an image twice.
    moved = retire_moved_partitions(
        catalog, known, paths.labels_dir, paths.features_path, paths.curated_dir
    )
    for key in moved:
        if key in known:
            context.instance.delete_dynamic_partition(STUDIES_PARTITION_NAME, key)
    if moved:
        context.log.info(f"{len(moved)} studies moved to another folder: old keys retired")
    ordered = list(context.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    selections = {
        f"{source}_partitions": dg.MetadataValue.text(
            selection_text(ordered, [k for k, s in sources.items() if s == source]) or "none"
        )
        for source in SOURCE_ORDER
    }
    context.log.info(
        f"catalogued {len(catalog)} files: {len(keys)} studies to label "
        f"({len(new_keys)} new partitions)"
    )

    outcomes = catalog["outcome"].value_counts()
    return dg.Output(
        catalog,
        metadata={
            "files": len(catalog),
            "labelled_images": int(outcomes.get(CatalogOutcome.LABELLED, 0)),
            "rejected_files": int(outcomes.get(CatalogOutcome.REJECTED, 0)),
            "studies": len(keys),
            "new_partitions": len(new_keys),
            "old_format_partitions_removed": len(legacy),
            "moved_studies_old_keys_retired": len(moved),
            "changed_studies": len(changed),
            "scan_complete": scan_is_complete(catalog),
            "scan_seconds": round(scan_seconds, 3),
            # A digest, not the path: run metadata holds no paths (README "Privacy").
            "data_dir_digest": paths.data_dir_digest(),
            "incoming_fingerprint": incoming.digest,
            "studies_table": dg.MetadataValue.md(study_summary(catalog).to_markdown(index=False)),
            "rejections": dg.MetadataValue.md(
                rejection_summary(catalog).to_markdown(index=False) or "none"
            ),
            "dagster/row_count": len(catalog),
            # Where each source's studies lie in the partitions' order (the UI's lists and bars).
            **selections,
            **dicomweb,
        },
    )
