"""A data and output directory as a pipeline run leaves them, with flagged landmarks to review.

Phantom studies are written as DICOM under ``incoming/``, scanned into ``catalog.parquet``, and
given machine labels at their true positions except for the landmarks a test wants flagged:
``misplaced`` ones sit ``shift_px`` columns off their truth with ``needs_review``, ``missing``
ones have no position. Building it takes about a second; no model is run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from labeling_pipeline.imaging.dicom import partition_key, read_label_image, scan_data_dir
from labeling_pipeline.labels.catalog import write_catalog
from labeling_pipeline.labels.dataset import label_rows, write_labels_partition
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.template import TemplateLandmark, TemplateLandmarks
from labeling_pipeline.synthetic.dicom_writer import StudyInfo, write_single_frame
from labeling_pipeline.synthetic.phantom import make_phantom
from labeling_pipeline.synthetic.sample_data import template_params

TEMPLATE_NAMES = ("L1", "L2", "L3", "L4", "L5", "S1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


@dataclass
class ReviewableStudy:
    partition_key: str
    sop_instance_uid: str
    truth: dict[str, tuple[float, float]]  # landmark -> (x, y) pixels
    flagged: tuple[str, ...]


@dataclass
class ReviewableOutputs:
    data_dir: Path
    output_dir: Path
    template: TemplateLandmarks
    studies: list[ReviewableStudy] = field(default_factory=list)

    @property
    def labels_dir(self) -> Path:
        return self.output_dir / "labels"

    @property
    def corrections_dir(self) -> Path:
        return self.output_dir / "corrections"

    def labels(self) -> pd.DataFrame:
        return pd.read_parquet(self.labels_dir)


def build_reviewable_outputs(
    root: Path,
    flagged: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
        (("L3",), ("S1",)),
        (("L4", "L5"), ()),
    ),
    shift_px: float = 14.0,
) -> ReviewableOutputs:
    """One study per item of ``flagged`` = ((misplaced names), (missing names))."""
    data_dir, output_dir = Path(root) / "data", Path(root) / "outputs"
    template = TemplateLandmarks(
        "lumbar",
        tuple(
            TemplateLandmark(n, "disc" if "-" in n else "vertebra", 0.0, 0.0)
            for n in TEMPLATE_NAMES
        ),
    )
    written = []
    for index, (misplaced, missing) in enumerate(flagged):
        phantom = make_phantom(template_params(11 + index, rows=256))
        study = StudyInfo(
            key=f"reviewable-{index}", case_number=900 + index, study_date=f"2026090{index + 1}"
        )
        path = data_dir / "incoming" / f"study_{index}" / "IM0001.dcm"
        written.append((write_single_frame(phantom, path, study), phantom, misplaced, missing))
    scan = scan_data_dir(data_dir)
    write_catalog(output_dir / "catalog.parquet", scan.catalog_frame())
    outputs = ReviewableOutputs(data_dir, output_dir, template)
    for image_file, phantom, misplaced, missing in written:
        image = read_label_image(image_file.path)
        key = partition_key("incoming", image.study_date, image.study_uid)
        results = []
        for name in TEMPLATE_NAMES:
            x, y, kind = phantom.landmarks[name]
            if name in missing:
                results.append(
                    LandmarkResult(name, kind, math.nan, math.nan, 0.1, NEEDS_REVIEW, "not found")
                )
            elif name in misplaced:
                results.append(
                    LandmarkResult(
                        name, kind, x + shift_px, y, 0.4, NEEDS_REVIEW, "uncertain", confidence=0.2
                    )
                )
            else:
                results.append(LandmarkResult(name, kind, x, y, 0.9, OK, confidence=0.9))
        extra = {"feature_model": "test", "strategy": "test"}
        rows = label_rows(image, key, results, extra, template=template)
        write_labels_partition(output_dir / "labels", key, rows)
        outputs.studies.append(
            ReviewableStudy(
                key,
                image.sop_instance_uid,
                {
                    n: (float(phantom.landmarks[n][0]), float(phantom.landmarks[n][1]))
                    for n in TEMPLATE_NAMES
                },
                tuple(misplaced) + tuple(missing),
            )
        )
    return outputs
