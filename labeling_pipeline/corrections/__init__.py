"""Review corrections: what people decided about machine labels, and the curated dataset.

- :mod:`.enum`: review actions, curated statuses and label sources (``StrEnum``).
- :mod:`.store`: the append-only correction records under ``<output>/corrections/``.
- :mod:`.curated`: machine labels joined with the latest correction per (image, landmark).

No Dagster imports: the shell (``defs/``), the review app and the command line call these.
"""

from labeling_pipeline.corrections.curated import (
    CURATED_COLUMNS_ADDED,
    curate_labels,
    read_curated,
    write_curated_partition,
)
from labeling_pipeline.corrections.enum import CuratedStatus, LabelSource, ReviewAction
from labeling_pipeline.corrections.store import (
    CORRECTION_COLUMNS,
    CorrectionError,
    append_corrections,
    latest_corrections,
    make_correction,
    read_corrections,
)

__all__ = [
    "CORRECTION_COLUMNS",
    "CURATED_COLUMNS_ADDED",
    "CorrectionError",
    "CuratedStatus",
    "LabelSource",
    "ReviewAction",
    "append_corrections",
    "curate_labels",
    "latest_corrections",
    "make_correction",
    "read_corrections",
    "read_curated",
    "write_curated_partition",
]
