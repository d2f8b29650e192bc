"""The correction records: one per review action, append-only, under ``<output>/corrections/``.

Each call to :func:`append_corrections` writes one new Parquet file (atomically, under a name
that is never reused) and no file is ever rewritten or deleted, so a decision once stored cannot
be lost by a later run, a crash or a second reviewer. ``pandas.read_parquet(".../corrections")``
reads them as one table; :func:`latest_corrections` keeps the last record per (image, landmark).

Records are keyed by ``sop_instance_uid`` and ``landmark``, not by anything a run produces, so
they survive re-labelling (nightly, after a template change, a backfill). Positions are ``x`` =
column and ``y`` = row in pixels of the labelled image, NaN where the action leaves none.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.corrections.enum import STATUS_AFTER, CuratedStatus, ReviewAction

MAX_REVIEWER_LENGTH = 80

_TYPES: dict[str, pa.DataType] = {
    "correction_id": pa.string(),  # random UUID of the record
    "recorded_at": pa.string(),  # UTC, ISO 8601 with microseconds: sorts in time order
    "reviewer": pa.string(),  # the name the reviewer typed; nothing else identifies them
    "action": pa.string(),  # ReviewAction
    "partition_key": pa.string(),
    "study_uid": pa.string(),
    "series_uid": pa.string(),
    "sop_instance_uid": pa.string(),
    "landmark": pa.string(),
    "kind": pa.string(),
    "old_x": pa.float64(),  # the position and status shown to the reviewer before the action
    "old_y": pa.float64(),
    "old_status": pa.string(),
    "new_x": pa.float64(),  # the position after the action (NaN: none, or back to machine)
    "new_y": pa.float64(),
    "new_status": pa.string(),  # CuratedStatus, "" for revert (the machine label counts)
}
CORRECTION_COLUMNS: tuple[str, ...] = tuple(_TYPES)
CORRECTION_ARROW_SCHEMA = pa.schema([pa.field(name, kind) for name, kind in _TYPES.items()])


class CorrectionError(ValueError):
    """A review action that cannot be recorded (unknown action, no reviewer, bad position)."""


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_correction(
    label: Mapping[str, Any],
    action: ReviewAction | str,
    reviewer: str,
    x: float | None = None,
    y: float | None = None,
    recorded_at: str | None = None,
) -> dict[str, Any]:
    """One correction record for ``label`` (a label or curated row: its identifying columns,
    ``x, y, status``, and ``rows, columns`` for the bounds check).

    ``move`` needs ``x, y`` inside the image (pixel centres run from 0 to size - 1; half a pixel
    beyond is still the image). ``confirm``/``accept_all`` keep the shown position (or ``x, y``
    when given) and need one. ``not_in_view`` and ``revert`` carry no position.
    """
    try:
        action = ReviewAction(action)
    except ValueError as error:
        allowed = ", ".join(a.value for a in ReviewAction)
        raise CorrectionError(f"unknown review action {action!r}; one of {allowed}") from error
    reviewer = " ".join(str(reviewer or "").split())
    if not reviewer:
        raise CorrectionError("a reviewer name is needed to record a decision")
    if len(reviewer) > MAX_REVIEWER_LENGTH:
        raise CorrectionError(f"reviewer name longer than {MAX_REVIEWER_LENGTH} characters")
    old_x, old_y = _float(label.get("x")), _float(label.get("y"))
    new_x = new_y = math.nan
    if action in (ReviewAction.MOVE, ReviewAction.CONFIRM, ReviewAction.ACCEPT_ALL):
        new_x = _float(x) if x is not None else old_x
        new_y = _float(y) if y is not None else old_y
        if action == ReviewAction.MOVE and (x is None or y is None):
            raise CorrectionError("a move needs the new position (x, y)")
        if not (math.isfinite(new_x) and math.isfinite(new_y)):
            raise CorrectionError(
                f"landmark {label.get('landmark')!r} has no position to {action.value}; "
                "place it first or mark it not in view"
            )
        rows, columns = int(label.get("rows") or 0), int(label.get("columns") or 0)
        if (
            rows > 0
            and columns > 0
            and not (-0.5 <= new_x <= columns - 0.5 and -0.5 <= new_y <= rows - 0.5)
        ):
            raise CorrectionError(
                f"position ({new_x:.1f}, {new_y:.1f}) lies outside the {columns} x {rows} image"
            )
    status = STATUS_AFTER[action]
    return {
        "correction_id": uuid.uuid4().hex,
        "recorded_at": recorded_at or _utc_now(),
        "reviewer": reviewer,
        "action": action.value,
        "partition_key": str(label.get("partition_key", "")),
        "study_uid": str(label.get("study_uid", "")),
        "series_uid": str(label.get("series_uid", "")),
        "sop_instance_uid": str(label["sop_instance_uid"]),
        "landmark": str(label["landmark"]),
        "kind": str(label.get("kind", "")),
        "old_x": old_x,
        "old_y": old_y,
        "old_status": str(label.get("status", "")),
        "new_x": new_x,
        "new_y": new_y,
        "new_status": "" if status is None else status.value,
    }


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in CORRECTION_COLUMNS if c not in frame.columns]
    if missing:
        raise CorrectionError(f"correction records lack columns {missing}")
    out = pd.DataFrame(index=frame.index)
    for name, kind in _TYPES.items():
        if kind == pa.float64():
            out[name] = pd.to_numeric(frame[name], errors="raise").astype("float64")
        else:
            out[name] = frame[name].fillna("").astype(str)
    bad = sorted(set(out["action"]) - {a.value for a in ReviewAction})
    if bad:
        raise CorrectionError(f"unknown review actions {bad}")
    bad = sorted(set(out["new_status"]) - {s.value for s in CuratedStatus} - {""})
    if bad:
        raise CorrectionError(f"unknown statuses {bad}")
    return out.reset_index(drop=True)


def append_corrections(corrections_dir: Path, records: Iterable[Mapping[str, Any]]) -> Path | None:
    """Store ``records`` (from :func:`make_correction`) as one new file; returns its path, or
    ``None`` when there is nothing to store.

    The name (``<UTC time>-<random>.parquet``) is new for every call; an existing file is never
    replaced, so the directory only grows.
    """
    frame = _conform(pd.DataFrame(list(records), columns=list(CORRECTION_COLUMNS)))
    if frame.empty:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = Path(corrections_dir) / f"{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    if path.exists():  # a random 48-bit suffix in the same microsecond: refuse, never replace
        raise CorrectionError(f"correction file {path} exists already")
    table = pa.Table.from_pandas(frame, schema=CORRECTION_ARROW_SCHEMA, preserve_index=False)
    return atomic_write(path, lambda temporary: pq.write_table(table, temporary))


def empty_corrections() -> pd.DataFrame:
    """No correction records, with the columns and types."""
    return _conform(pd.DataFrame({name: [] for name in CORRECTION_COLUMNS}))


def correction_files(corrections_dir: Path) -> list[Path]:
    """The stored correction files, oldest first (hidden temporary files are skipped)."""
    directory = Path(corrections_dir)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def read_corrections(corrections_dir: Path) -> pd.DataFrame:
    """Every record, in the order they were made (time, then file, then row)."""
    files = correction_files(corrections_dir)
    if not files:
        return empty_corrections()
    frames = []
    for order, path in enumerate(files):
        try:
            frame = _conform(pd.read_parquet(path))
        except Exception as error:  # name the file: the reader must know which one is broken
            raise CorrectionError(f"cannot read correction file {path}: {error}") from error
        frames.append(frame.assign(_file=order, _row=range(len(frame))))
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["recorded_at", "_file", "_row"], kind="stable")
    return table.drop(columns=["_file", "_row"]).reset_index(drop=True)


def latest_corrections(corrections: pd.DataFrame) -> pd.DataFrame:
    """The last record per (``sop_instance_uid``, ``landmark``) of a table in time order
    (:func:`read_corrections`), including ``revert`` records (the caller lets those fall back
    to the machine label)."""
    if corrections.empty:
        return corrections.copy()
    latest = corrections.drop_duplicates(["sop_instance_uid", "landmark"], keep="last")
    return latest.reset_index(drop=True)
