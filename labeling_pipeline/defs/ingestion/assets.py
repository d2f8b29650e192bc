"""Ingestion: every DICOM file under ``incoming/`` and ``archive/``, catalogued, one partition
per study."""

import hashlib
import time

import dagster as dg
import pandas as pd

from labeling_pipeline.defs.ingestion.listing import tree_fingerprint
from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME
from labeling_pipeline.defs.resources import PipelineConfig
from labeling_pipeline.imaging.dicom import LABELLED, REJECTED, scan_data_dir
from labeling_pipeline.labels.catalog import write_catalog


def labelled_partition_keys(catalog: pd.DataFrame) -> list[str]:
    """The studies that have at least one image to label, as sorted partition keys."""
    labelled = catalog[(catalog["outcome"] == LABELLED) & (catalog["partition_key"] != "")]
    return sorted(set(labelled["partition_key"]))


def study_digest(catalog: pd.DataFrame, partition_key: str) -> str:
    """A digest of one study's files (paths, contents, outcomes): it changes when a file of
    the study is added, removed or replaced, so a study is labelled again only then."""
    rows = catalog[catalog["partition_key"] == partition_key].sort_values("path", kind="stable")
    digest = hashlib.sha256()
    for path, sha256, outcome in zip(rows["path"], rows["sha256"], rows["outcome"], strict=True):
        digest.update(f"{path}\0{sha256}\0{outcome}\n".encode())
    return digest.hexdigest()


def study_summary(catalog: pd.DataFrame) -> pd.DataFrame:
    """Per study partition: its source folder(s), files, labelled images and rejected files."""
    studies = catalog[catalog["partition_key"] != ""]
    if studies.empty:
        return pd.DataFrame(columns=["partition_key", "source", "files", "labelled", "rejected"])
    grouped = studies.groupby("partition_key", sort=True)
    return pd.DataFrame(
        {
            "source": grouped["source"].agg(lambda s: ",".join(sorted(set(s)))),
            "files": grouped.size(),
            "labelled": grouped["outcome"].agg(lambda s: int((s == LABELLED).sum())),
            "rejected": grouped["outcome"].agg(lambda s: int((s == REJECTED).sum())),
        }
    ).reset_index()


def rejection_summary(catalog: pd.DataFrame) -> pd.DataFrame:
    """Rejected files counted by reason code, most frequent first."""
    rejected = catalog[catalog["outcome"] == REJECTED]
    counts = rejected.groupby("reason_code").size().sort_values(ascending=False, kind="stable")
    return counts.rename("files").reset_index()


@dg.asset(
    group_name="ingestion",
    kinds={"dicom", "parquet"},
    description=(
        "Every file under the data directory's incoming/ and archive/, validated, with its "
        "outcome (labelled, accepted, rejected and why), written to catalog.parquet. One image "
        "per series is chosen for labelling; each study with one becomes a 'studies' partition."
    ),
)
def dicom_catalog(context: dg.AssetExecutionContext, pipeline: PipelineConfig) -> dg.Output:
    paths = pipeline.paths()
    if not paths.data_dir.is_dir():
        raise dg.Failure(f"data directory {paths.data_dir} does not exist")
    # Fingerprint before scanning: files that change during the scan make the sensor rescan.
    incoming = tree_fingerprint(paths.incoming_dir)
    started = time.perf_counter()
    try:
        # One scan of both folders: a study or SOP instance present in both is labelled once.
        catalog = scan_data_dir(paths.data_dir).catalog_frame()
    except ValueError as error:  # e.g. incoming is a file, not a folder
        raise dg.Failure(f"cannot scan {paths.data_dir}: {error}") from error
    scan_seconds = time.perf_counter() - started
    write_catalog(paths.catalog_path, catalog)

    keys = labelled_partition_keys(catalog)
    known = set(context.instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    new_keys = [key for key in keys if key not in known]
    if new_keys:
        context.instance.add_dynamic_partitions(STUDIES_PARTITION_NAME, new_keys)
    context.log.info(
        f"catalogued {len(catalog)} files: {len(keys)} studies to label "
        f"({len(new_keys)} new partitions)"
    )

    outcomes = catalog["outcome"].value_counts()
    return dg.Output(
        catalog,
        metadata={
            "files": len(catalog),
            "labelled_images": int(outcomes.get(LABELLED, 0)),
            "rejected_files": int(outcomes.get(REJECTED, 0)),
            "studies": len(keys),
            "new_partitions": len(new_keys),
            "scan_seconds": round(scan_seconds, 3),
            "catalog_path": dg.MetadataValue.path(str(paths.catalog_path)),
            "data_dir": dg.MetadataValue.path(str(paths.data_dir)),
            "incoming_fingerprint": incoming.digest,
            "studies_table": dg.MetadataValue.md(study_summary(catalog).to_markdown(index=False)),
            "rejections": dg.MetadataValue.md(
                rejection_summary(catalog).to_markdown(index=False) or "none"
            ),
            "dagster/row_count": len(catalog),
        },
    )
