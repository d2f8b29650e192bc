"""Write-back: the study's DICOM SRs stored on the DICOMweb server it came from (STOW-RS).

Runs only with ``LABELING_DICOMWEB_URL`` and ``LABELING_DICOMWEB_STORE=1``; otherwise the step
does nothing and the asset is not materialized. Only images the catalog says came from that
server are sent (the server holds their study); a failed store is recorded in the metadata and
tried again on the next run, and never fails the labels, which are already written.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from labeling_pipeline.corrections.curated import read_curated_partition
from labeling_pipeline.corrections.publish import sr_file
from labeling_pipeline.defs.curated.assets import curated_labels
from labeling_pipeline.defs.ingestion.partitions import (
    studies_backfill_policy,
    studies_partitions,
)
from labeling_pipeline.defs.labels.schedules import pacs_condition
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.imaging.dicomweb import (
    DicomwebConfigError,
    DicomwebSettings,
    StoreStatus,
    images_on_server,
    store_counts,
    store_sr_files,
)
from labeling_pipeline.labels.catalog import read_catalog


@dg.asset(
    partitions_def=studies_partitions,
    group_name="curated",
    kinds={"dicom"},
    deps=[curated_labels],
    backfill_policy=studies_backfill_policy,
    output_required=False,
    automation_condition=pacs_condition(),
    description=(
        "With LABELING_DICOMWEB_STORE=1: the DICOM SR of each labelled image of the study that "
        "came from LABELING_DICOMWEB_URL (the file in `sr/`, curated labels), stored on that "
        "server with STOW-RS, UIDs derived from the image and the labels' content: unchanged "
        "labels are not sent again, changed ones add an instance to the image's SR series."
    ),
)
def pacs_structured_reports(
    context: dg.AssetExecutionContext, pipeline: PipelineResource
) -> Iterator[dg.MaterializeResult]:
    try:
        settings = DicomwebSettings.from_env()
    except DicomwebConfigError as error:
        raise dg.Failure(f"DICOMweb settings: {error}") from error
    if settings is None or not settings.store_enabled:
        context.log.debug("SR write-back is off (LABELING_DICOMWEB_URL, LABELING_DICOMWEB_STORE)")
        return
    paths = pipeline.paths()
    # The run's studies (a batch, or one), from the curated files curated_labels wrote.
    curated = pd.concat(
        [read_curated_partition(paths.curated_dir, key) for key in context.partition_keys]
    )
    labelled = sorted(set(curated["sop_instance_uid"].astype(str)))
    on_server = images_on_server(read_catalog(paths.catalog_path), labelled, settings.server_url)
    outcomes = store_sr_files(
        settings.client(), {sop: sr_file(paths.sr_dir, sop) for sop in on_server}
    )
    counts = store_counts(outcomes)
    failed = [o for o in outcomes if o.status == StoreStatus.FAILED]
    if failed:
        # Messages name the operation and HTTP status only (never credentials).
        context.log.warning(
            f"{len(failed)} of {len(outcomes)} SRs not stored on {settings.server_url} "
            f"(tried again next run): {sorted({o.message for o in failed})}"
        )
    yield dg.MaterializeResult(
        metadata={
            "dicomweb_server": settings.server_url,
            **{f"sr_{status}": n for status, n in counts.items()},
            "sr_not_from_server": len(labelled) - len(on_server),
            "failed_reasons": dg.MetadataValue.json(sorted({o.reason for o in failed})),
        }
    )
