"""Outputs brought back in line with the catalog: what was made for an image that is no longer
labelled (its study withdrawn, its file now rejected, another slice of its series chosen) is
removed.

Only call this after a complete scan of the data directory (see
:func:`labeling_pipeline.imaging.dicom.scan_is_complete`): after a partial one, images in the
folders that could not be read would look withdrawn. ``corrections/`` is never touched.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.features.store import FeatureStore
from labeling_pipeline.imaging.dicom import PARTITION_KEY, CatalogOutcome, image_key
from labeling_pipeline.labels.dataset import (
    partition_path,
    read_labels_partition,
    remove_labels_partition,
    write_labels_partition,
)

# A partition's file: its key (``<source>-YYYYMMDD-<8 hex>``) or, left by a run before the
# source was part of the key, ``YYYYMMDD-<8 hex>``: no catalog wants those, so they are withdrawn.
_PARTITION_FILE = re.compile(
    r"^(?P<key>(?:(?:archive|dicomweb|incoming)-)?(?:\d{8}|nodate)-[0-9a-f]{8})\.parquet$"
)
# Names an output file of one image has: a UID, or "x" + 16 hex (image_key of anything else).
_IMAGE_FILE_STEM = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)*|x[0-9a-f]{16})$")


@dataclass
class ReconcileReport:
    """What :func:`reconcile_outputs` removed: label rows and whole label files, overlays, SR
    files, feature maps; ``images`` are the SOPInstanceUIDs (or image keys) concerned."""

    label_rows: int = 0
    label_files: int = 0
    overlays: int = 0
    structured_reports: int = 0
    feature_maps: int = 0
    images: set[str] = field(default_factory=set)

    @property
    def removed(self) -> int:
        return self.label_rows + self.overlays + self.structured_reports + self.feature_maps


def labelled_images(catalog: pd.DataFrame) -> dict[str, set[str]]:
    """Per partition key, the SOPInstanceUIDs the catalog labels."""
    wanted: dict[str, set[str]] = defaultdict(set)
    rows = catalog[catalog["outcome"] == CatalogOutcome.LABELLED]
    for key, uid in zip(rows["partition_key"], rows["sop_instance_uid"], strict=True):
        if key and uid:
            wanted[str(key)].add(str(uid))
    return dict(wanted)


def _reconcile_labels(
    labels_dir: Path, wanted: dict[str, set[str]], report: ReconcileReport
) -> None:
    if not labels_dir.is_dir():
        return
    for path in sorted(labels_dir.iterdir()):
        match = _PARTITION_FILE.match(path.name)
        if match is None:
            continue
        key = match.group("key")
        labels = read_labels_partition(labels_dir, key)
        keep = labels["sop_instance_uid"].isin(wanted.get(key, set()))
        if keep.all() and key in wanted:
            continue
        report.images.update(labels.loc[~keep, "sop_instance_uid"])
        report.label_rows += int((~keep).sum())
        if keep.any():
            write_labels_partition(labels_dir, key, labels[keep])  # atomic replace
        else:
            partition_path(labels_dir, key).unlink(missing_ok=True)  # one atomic unlink
            report.label_files += 1


def _reconcile_image_files(
    directory: Path, wanted_keys: set[str], report: ReconcileReport, recursive: bool
) -> int:
    removed = 0
    if not directory.is_dir():
        return removed
    files = directory.rglob("*") if recursive else directory.iterdir()
    for path in sorted(files):
        if not path.is_file() or path.name.startswith("."):
            continue
        stem = path.stem
        if _IMAGE_FILE_STEM.match(stem) and stem not in wanted_keys:
            path.unlink(missing_ok=True)
            report.images.add(stem)
            removed += 1
    return removed


def _reconcile_partition_tables(
    directory: Path, wanted: dict[str, set[str]], report: ReconcileReport
) -> None:
    """Per-partition Parquet tables with a ``sop_instance_uid`` column (``curated/``): rows of
    images no longer labelled go; a file left without rows goes."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        match = _PARTITION_FILE.match(path.name)
        if match is None:
            continue
        key = match.group("key")
        table = pq.read_table(path)
        if "sop_instance_uid" not in table.column_names:
            continue
        uids = table.column("sop_instance_uid").to_pylist()
        keep = [uid in wanted.get(key, set()) for uid in uids]
        if all(keep) and key in wanted:
            continue
        report.images.update(uid for uid, kept in zip(uids, keep, strict=True) if not kept)
        if any(keep):
            reduced = table.filter(pa.array(keep))
            atomic_write(path, lambda temporary, t=reduced: pq.write_table(t, temporary))
        else:
            path.unlink(missing_ok=True)


def reconcile_outputs(
    catalog: pd.DataFrame,
    labels_dir: Path,
    overlays_dir: Path,
    features_path: Path,
    sr_dir: Path | None = None,
    curated_dir: Path | None = None,
) -> ReconcileReport:
    """Remove the labels, curated rows (``curated/``), overlays (``<image key>.png``), SR files
    (``sr/``, named by image key) and feature maps of every image that ``catalog`` does not
    label. Each removal is atomic (a file unlinked or replaced by its reduced version, a
    feature node renamed away before it is deleted), so readers never see half of one."""
    report = ReconcileReport()
    wanted = labelled_images(catalog)
    wanted_keys = {image_key(uid) for uids in wanted.values() for uid in uids}
    _reconcile_labels(Path(labels_dir), wanted, report)
    if curated_dir is not None:
        _reconcile_partition_tables(Path(curated_dir), wanted, report)
    report.overlays = _reconcile_image_files(Path(overlays_dir), wanted_keys, report, False)
    if sr_dir is not None:
        report.structured_reports = _reconcile_image_files(Path(sr_dir), wanted_keys, report, True)
    store = FeatureStore(features_path)
    for key in store.partition_keys():
        for uid in store.image_keys(key):
            if uid not in wanted.get(key, set()):
                store.delete_image(key, uid)
                report.feature_maps += 1
                report.images.add(uid)
        if key not in wanted and not store.image_keys(key):
            store.delete_partition(key)
    return report


def _study_part(key: str) -> str:
    """A partition key without its source: ``<date>-<hash>``, the same for the study in any
    folder."""
    return key.split("-", 1)[1] if PARTITION_KEY.match(key) else ""


def moved_partition_keys(existing: Iterable[str], current: Iterable[str]) -> set[str]:
    """The keys among ``existing`` whose study now has another key in ``current``: the same
    study (date and hash) under another source, i.e. its files moved between folders."""
    current_keys = set(current)
    now = {_study_part(key) for key in current_keys} - {""}
    return {key for key in existing if key not in current_keys and _study_part(key) in now}


def retire_moved_partitions(
    catalog: pd.DataFrame,
    known_keys: Iterable[str],
    labels_dir: Path,
    features_path: Path,
    curated_dir: Path | None = None,
) -> list[str]:
    """Remove the per-partition outputs (labels, curated rows, features) of every study whose
    files moved to another folder since it was labelled under its old key, so the label
    dataset never holds an image twice (overlays and SRs are named by image and stay). The
    old keys are found among ``known_keys`` and the partition files on disk; returns them."""
    labels_dir = Path(labels_dir)
    store = FeatureStore(features_path)
    on_disk = {p.stem for p in labels_dir.glob("[!._]*.parquet")} if labels_dir.is_dir() else set()
    if curated_dir is not None and Path(curated_dir).is_dir():
        on_disk |= {p.stem for p in Path(curated_dir).glob("[!._]*.parquet")}
    on_disk |= set(store.partition_keys())
    moved = sorted(moved_partition_keys({*known_keys, *on_disk}, labelled_images(catalog)))
    for key in moved:
        remove_labels_partition(labels_dir, key)
        if curated_dir is not None:
            remove_labels_partition(Path(curated_dir), key)
        store.delete_partition(key)
    return moved
