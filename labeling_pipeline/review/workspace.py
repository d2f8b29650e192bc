"""What the review app shows and records: the curated state of every labelled image.

The queue, the landmarks of one image and its pixels come from the output directory (labels,
``catalog.parquet``, ``corrections/``) and the data directory (the DICOM file the catalog
names for each labelled image). Every decision is appended to ``corrections/`` at once, so
closing the browser loses nothing. Nothing here identifies a patient: images are named by their
SOPInstanceUID and partition key, as in the label dataset.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.corrections import (
    CorrectionError,
    CuratedStatus,
    ReviewAction,
    append_corrections,
    curate_labels,
    make_correction,
    read_corrections,
)
from labeling_pipeline.corrections.bank import BankRefresh, refresh_template_bank
from labeling_pipeline.corrections.publish import MissingSourceError, labelled_source
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.dataset import read_labels
from labeling_pipeline.localization.template import load_template_landmarks

LABELLED_OUTCOME = "labelled"
WINDOW_PERCENTILES = (1.0, 99.0)
LANDMARK_FIELDS = (
    "landmark",
    "kind",
    "x",
    "y",
    "status",
    "source",
    "confidence",
    "reason",
    "reviewer",
    "machine_status",
    "template",  # which template placed it (the default, template/<name>/ or the review bank)
)


class UnknownImageError(LookupError):
    """No labelled image with that SOPInstanceUID in this output directory."""


@dataclass(frozen=True)
class QueueFilter:
    """Which images the queue lists: ``study`` matches a partition key or StudyInstanceUID
    (substring), ``landmark`` a landmark name, ``status`` a curated status (default: images
    with a landmark that needs review)."""

    study: str = ""
    landmark: str = ""
    status: str = CuratedStatus.NEEDS_REVIEW.value


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def default_window(pixels: np.ndarray) -> tuple[float, float]:
    """Window (centre, width) over the 1st..99th percentile of the finite pixel values."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, WINDOW_PERCENTILES))
    width = max(high - low, 1e-6)
    return low + width / 2, width


class ReviewWorkspace:
    """The review state of one data and output directory.

    Tables are read again when their files change (a run that finishes while the app is open
    shows up on the next request); decisions are serialised by a lock so that two browser tabs
    never interleave half-written records.
    """

    def __init__(self, data_dir: Path, output_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.output_dir = Path(output_dir)
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[Any, Any]] = {}

    # Locations ------------------------------------------------------------------------------
    @property
    def labels_dir(self) -> Path:
        return self.output_dir / "labels"

    @property
    def corrections_dir(self) -> Path:
        return self.output_dir / "corrections"

    @property
    def catalog_path(self) -> Path:
        return self.output_dir / "catalog.parquet"

    @property
    def template_bank_dir(self) -> Path:
        return self.output_dir / "template_bank"

    # Reading --------------------------------------------------------------------------------
    def _stamp(self, path: Path) -> tuple:
        if path.is_dir():
            return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(path.glob("[!.]*.parquet")))
        return (path.stat().st_mtime_ns,) if path.exists() else ()

    def _cached(self, name: str, path: Path, load: Any) -> Any:
        stamp = self._stamp(path)
        hit = self._cache.get(name)
        if hit is None or hit[0] != stamp:
            hit = (stamp, load())
            self._cache[name] = hit
        return hit[1]

    def curated(self) -> pd.DataFrame:
        """The curated rows of every labelled image (labels joined with the corrections)."""
        with self._lock:
            labels = self._cached("labels", self.labels_dir, lambda: read_labels(self.labels_dir))
            corrections = self._cached(
                "corrections", self.corrections_dir, lambda: read_corrections(self.corrections_dir)
            )
            return curate_labels(labels, corrections)

    def catalog(self) -> pd.DataFrame:
        return self._cached("catalog", self.catalog_path, lambda: read_catalog(self.catalog_path))

    # The queue ------------------------------------------------------------------------------
    def queue(self, where: QueueFilter | None = None) -> list[dict[str, Any]]:
        """Images to review, most uncertain first: those with a landmark in ``where.status``
        (lowest confidence among them first, then most such landmarks), with counts per status
        and the reasons the machine gave."""
        where = where or QueueFilter()
        curated = self.curated()
        if curated.empty:
            return []
        matching = curated[curated["status"] == where.status] if where.status else curated
        if where.landmark:
            matching = matching[matching["landmark"] == where.landmark]
        if where.study:
            text = where.study.strip()
            matching = matching[
                matching["partition_key"].str.contains(text, regex=False)
                | matching["study_uid"].str.contains(text, regex=False)
            ]
        items = []
        for sop, rows in matching.groupby("sop_instance_uid", sort=False):
            image_rows = curated[curated["sop_instance_uid"] == sop]
            first = image_rows.iloc[0]
            flagged = image_rows[image_rows["status"] == CuratedStatus.NEEDS_REVIEW.value]
            reasons = sorted({r for r in flagged.get("reason", pd.Series(dtype=str)) if r})
            items.append(
                {
                    "sop_instance_uid": sop,
                    "partition_key": first["partition_key"],
                    "study_date": first.get("study_date", ""),
                    "counts": {k: int(v) for k, v in image_rows["status"].value_counts().items()},
                    "matching": rows["landmark"].tolist(),
                    "reasons": reasons,
                    "min_confidence": _number(rows["confidence"].min())
                    if "confidence" in rows
                    else None,
                }
            )
        items.sort(
            key=lambda item: (
                math.inf if item["min_confidence"] is None else item["min_confidence"],
                -len(item["matching"]),
                item["partition_key"],
                item["sop_instance_uid"],
            )
        )
        return items

    def filter_choices(self) -> dict[str, list[str]]:
        """The values the queue's filters can take (studies, landmarks, statuses)."""
        curated = self.curated()
        return {
            "studies": sorted(set(curated["partition_key"])),
            "landmarks": list(dict.fromkeys(curated["landmark"])),
            "statuses": [s.value for s in CuratedStatus],
        }

    # One image ------------------------------------------------------------------------------
    def image_rows(self, sop_instance_uid: str) -> pd.DataFrame:
        curated = self.curated()
        rows = curated[curated["sop_instance_uid"] == sop_instance_uid]
        if rows.empty:
            raise UnknownImageError(f"no labelled image {sop_instance_uid!r}")
        return rows

    def image_detail(
        self, sop_instance_uid: str, where: QueueFilter | None = None
    ) -> dict[str, Any]:
        """The image's geometry, landmarks (curated) and the next image of the queue."""
        rows = self.image_rows(sop_instance_uid)
        first = rows.iloc[0]
        landmarks = []
        for record in rows.to_dict("records"):
            item = {name: record.get(name, "") for name in LANDMARK_FIELDS}
            for name in ("x", "y", "confidence"):
                item[name] = _number(item[name]) if item[name] != "" else None
            landmarks.append(item)
        queue = [item["sop_instance_uid"] for item in self.queue(where)]
        others = [sop for sop in queue if sop != sop_instance_uid]
        following = (
            queue[queue.index(sop_instance_uid) + 1 :] if sop_instance_uid in queue else others
        )
        return {
            "sop_instance_uid": sop_instance_uid,
            "partition_key": first["partition_key"],
            "study_date": first.get("study_date", ""),
            "rows": int(first["rows"]),
            "columns": int(first["columns"]),
            "pixel_spacing_mm": [
                float(first["pixel_spacing_row_mm"]),
                float(first["pixel_spacing_col_mm"]),
            ],
            "landmarks": landmarks,
            "remaining": len(others),
            "next": (following or others or [None])[0],
        }

    def source_file(self, sop_instance_uid: str) -> tuple[Path, int]:
        """The DICOM file and frame the catalog records as labelled for this image."""
        try:
            relative, frame = labelled_source(self.catalog(), sop_instance_uid)
        except MissingSourceError as error:
            raise UnknownImageError(str(error)) from error
        return self.data_dir / relative, frame

    def image(self, sop_instance_uid: str) -> LabelImage:
        """The labelled image itself (modality LUT applied, as the pipeline saw it)."""
        path, frame = self.source_file(sop_instance_uid)
        return read_label_image(path, frame_index=frame)

    def labelled_images(self) -> list[dict[str, Any]]:
        """Every labelled image of the catalog (candidates for a new template)."""
        catalog = self.catalog()
        rows = catalog[catalog["outcome"] == LABELLED_OUTCOME]
        return [
            {
                "sop_instance_uid": r["sop_instance_uid"],
                "partition_key": r["partition_key"],
                "study_date": r["study_date"],
                "rows": int(r["rows"]),
                "columns": int(r["columns"]),
            }
            for r in rows.to_dict("records")
        ]

    # Recording ------------------------------------------------------------------------------
    def record(
        self, sop_instance_uid: str, reviewer: str, actions: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store one correction per action (``{"landmark", "action", "x"?, "y"?}``), all in one
        file; returns the records. ``accept_all`` without a landmark confirms every landmark
        of the image that has a position and no reviewer decision yet."""
        with self._lock:
            rows = self.image_rows(sop_instance_uid)
            by_name = {r["landmark"]: r for r in rows.to_dict("records")}
            records: list[dict[str, Any]] = []
            for action in actions:
                kind = str(action.get("action", ""))
                name = action.get("landmark")
                if kind == ReviewAction.ACCEPT_ALL.value and not name:
                    decided = {record["landmark"] for record in records}  # earlier in this call
                    for row in by_name.values():
                        placed = row["x"] == row["x"] and row["y"] == row["y"]  # not NaN
                        if row["source"] == "machine" and placed and row["landmark"] not in decided:
                            records.append(make_correction(row, kind, reviewer))
                    continue
                if name not in by_name:
                    raise CorrectionError(f"image has no landmark {name!r}")
                records.append(
                    make_correction(
                        by_name[name], kind, reviewer, x=action.get("x"), y=action.get("y")
                    )
                )
            append_corrections(self.corrections_dir, records)
            return records

    def refresh_bank(self) -> BankRefresh:
        """Make the review bank (``template_bank/``) hold the fully reviewed images as they
        are now, so that the next run labels with them (:mod:`labeling_pipeline.corrections.bank`).
        Raises ``TemplateError`` / ``DomainError`` when the data directory has no usable
        default template (its region decides the bank's)."""
        landmarks = load_template_landmarks(self.data_dir / "template" / "landmarks.json")
        domain = load_domain(landmarks.region, self.data_dir / "domain")
        with self._lock:
            return refresh_template_bank(
                self.template_bank_dir,
                self.curated(),
                self.catalog(),
                self.data_dir,
                landmarks.region,
                domain.order,
            )
