"""Studies from a DICOMweb server (PACS, vendor-neutral archive) and labels written back.

QIDO-RS finds studies by StudyDate and modality and their sagittal spine series
(:mod:`.query`); WADO-RS retrieves only those series' image instances into a local cache with a
size limit (:mod:`.cache`, :mod:`.sync`); STOW-RS stores DICOM SRs of the labels back without
piling up (:mod:`.store`). Settings come from ``LABELING_DICOMWEB_*`` (:mod:`.config`). No
Dagster here: the pipeline's shell calls these functions.
"""

from labeling_pipeline.imaging.dicomweb.cache import (
    StudyCache,
    StudyRecord,
    cache_root,
    with_server_urls,
)
from labeling_pipeline.imaging.dicomweb.config import (
    DicomwebConfigError,
    DicomwebSettings,
    SeriesFilter,
)
from labeling_pipeline.imaging.dicomweb.enum import FailureReason, StoreStatus, StudyStatus
from labeling_pipeline.imaging.dicomweb.errors import DicomwebError, classify_error
from labeling_pipeline.imaging.dicomweb.query import DateRange, StudyHit, search_studies
from labeling_pipeline.imaging.dicomweb.store import (
    SrToStore,
    StoreOutcome,
    images_on_server,
    store_counts,
    store_sr_files,
    store_structured_reports,
)
from labeling_pipeline.imaging.dicomweb.sync import (
    UP_TO_DATE,
    StudyOutcome,
    SyncPlan,
    SyncReport,
    pending_studies,
    plan_sync,
    retrieve_studies,
    sync_data_dir,
    sync_server,
)

__all__ = [
    "UP_TO_DATE",
    "DateRange",
    "DicomwebConfigError",
    "DicomwebError",
    "DicomwebSettings",
    "FailureReason",
    "SeriesFilter",
    "SrToStore",
    "StoreOutcome",
    "StoreStatus",
    "StudyCache",
    "StudyHit",
    "StudyOutcome",
    "StudyRecord",
    "StudyStatus",
    "SyncPlan",
    "SyncReport",
    "cache_root",
    "classify_error",
    "images_on_server",
    "pending_studies",
    "plan_sync",
    "retrieve_studies",
    "search_studies",
    "store_counts",
    "store_sr_files",
    "store_structured_reports",
    "sync_data_dir",
    "sync_server",
    "with_server_urls",
]
