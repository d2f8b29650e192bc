"""The dataset-level QA report: ``qa/report.html`` with its plots.

For each pair of adjacent vertebrae, the distribution of step distances (mm) and angles (deg)
over every labelled image, with the domain range drawn in; the images whose steps are outliers
for this dataset although inside the domain range (a shifted or squeezed chain often is); and
the share of flagged landmarks per landmark, per study month and per site, scanner and sequence
(InstitutionName, Manufacturer + ManufacturerModelName, SeriesDescription from the headers), so
that a new protocol whose flag rate jumps stands out.

Outliers: a step whose distance or angle lies more than :data:`OUTLIER_Z` robust standard
deviations (1.4826 x the median absolute deviation) from the dataset's median for its pair,
judged only for pairs seen in at least :data:`MIN_STEPS_FOR_OUTLIERS` images. The deviation
has a floor (:data:`SPREAD_FLOOR`: 2 mm, 5 deg, about what placing a landmark by hand
varies), so that a dataset of near-identical images does not call small differences outliers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: plots go to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pydicom  # noqa: E402

from labeling_pipeline.atomic import atomic_write  # noqa: E402
from labeling_pipeline.labels.qa import DEFAULT_ORDER, adjacent_vertebra_steps  # noqa: E402

OUTLIER_Z = 3.5
MIN_STEPS_FOR_OUTLIERS = 5
SPREAD_FLOOR = {"distance_mm": 2.0, "angle_deg": 5.0}
PLACED = ("ok", "corrected", "confirmed")
FLAGGED = "needs_review"
HEADER_COLUMNS = ("site", "scanner", "sequence")
OUTLIER_COLUMNS = (
    "partition_key",
    "sop_instance_uid",
    "pair",
    "distance_mm",
    "angle_deg",
    "distance_z",
    "angle_z",
)


def image_headers(catalog: pd.DataFrame, data_dir: Path) -> pd.DataFrame:
    """Site, scanner and sequence of each labelled image, from its DICOM header (``""`` when
    a file cannot be read; the catalog already says why)."""
    rows = []
    for entry in catalog[catalog["outcome"] == "labelled"].to_dict("records"):
        try:
            ds = pydicom.dcmread(Path(data_dir) / entry["path"], stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            ds = pydicom.Dataset()
        scanner = " ".join(
            str(ds.get(k, "") or "").strip() for k in ("Manufacturer", "ManufacturerModelName")
        ).strip()
        rows.append(
            {
                "sop_instance_uid": entry["sop_instance_uid"],
                "site": str(ds.get("InstitutionName", "") or "").strip(),
                "scanner": scanner,
                "sequence": str(ds.get("SeriesDescription", "") or "").strip(),
            }
        )
    return pd.DataFrame(rows, columns=["sop_instance_uid", *HEADER_COLUMNS])


def placed_steps(frame: pd.DataFrame, order: Sequence[str] = DEFAULT_ORDER) -> pd.DataFrame:
    """Steps between adjacent vertebrae whose positions count (``ok``, ``corrected``,
    ``confirmed``), as :func:`~labeling_pipeline.labels.qa.adjacent_vertebra_steps` measures."""
    counted = frame.assign(status=np.where(frame["status"].isin(PLACED), "ok", "other"))
    return adjacent_vertebra_steps(counted, order)


def _robust_z(values: pd.Series, floor: float) -> pd.Series:
    median = values.median()
    spread = max(1.4826 * float((values - median).abs().median()), floor)
    return (values - median) / spread


def step_outliers(steps: pd.DataFrame) -> pd.DataFrame:
    """Steps far from the dataset's own typical value for their pair (see module doc)."""
    found = []
    for _pair, rows in steps.groupby("pair", sort=False):
        if len(rows) < MIN_STEPS_FOR_OUTLIERS:
            continue
        rows = rows.assign(
            distance_z=_robust_z(rows["distance_mm"], SPREAD_FLOOR["distance_mm"]),
            angle_z=_robust_z(rows["angle_deg"], SPREAD_FLOOR["angle_deg"]),
        )
        far = (rows["distance_z"].abs() > OUTLIER_Z) | (rows["angle_z"].abs() > OUTLIER_Z)
        found.append(rows[far])
    if not found:
        return pd.DataFrame(columns=list(OUTLIER_COLUMNS))
    return pd.concat(found)[list(OUTLIER_COLUMNS)].reset_index(drop=True)


def flag_rates(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of column ``by``: landmarks, flagged landmarks, their share, images."""
    grouped = frame.groupby(by, sort=True, dropna=False)
    table = pd.DataFrame(
        {
            "landmarks": grouped.size(),
            "flagged": grouped["status"].apply(lambda s: int((s == FLAGGED).sum())),
            "images": grouped["sop_instance_uid"].nunique(),
        }
    )
    table["flagged_share"] = table["flagged"] / table["landmarks"]
    return table.reset_index()


@dataclass
class QAReport:
    """What the report found; ``path`` is ``qa/report.html``."""

    path: Path
    steps: pd.DataFrame
    outliers: pd.DataFrame
    rates: dict[str, pd.DataFrame] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)


def _plot_pair(
    steps: pd.DataFrame, pair: str, bounds: Sequence[float | None] | None, path: Path
) -> Path:
    figure, axes = plt.subplots(1, 2, figsize=(7.5, 2.6))
    for axis, column, unit, limits in (
        (axes[0], "distance_mm", "mm", bounds[:2] if bounds else None),
        (axes[1], "angle_deg", "deg", bounds[2:] if bounds else None),
    ):
        axis.hist(steps[column], bins=min(20, max(5, len(steps))), color="#4a7fb5")
        for limit in limits or ():
            if limit is not None and math.isfinite(limit):
                axis.axvline(limit, color="#c0392b", linestyle="--", linewidth=1)
        axis.set_xlabel(f"{column.split('_')[0]} ({unit})")
        axis.set_ylabel("images")
    figure.suptitle(f"{pair}: {len(steps)} images (dashed: domain range)", fontsize=10)
    figure.tight_layout()
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=90))
    plt.close(figure)
    return path


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>none</p>"
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, escape=True)


def write_qa_report(
    frame: pd.DataFrame,
    qa_dir: Path,
    headers: pd.DataFrame | None = None,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    order: Sequence[str] = DEFAULT_ORDER,
) -> QAReport:
    """Write ``qa_dir/report.html`` and its plots (``qa_dir/plots/``) for ``frame`` (curated
    or label rows, any extra columns); ``headers`` from :func:`image_headers`; ``ranges`` as
    ``DomainKnowledge.to_ranges()`` gives them (``"caudal-cranial": (min_mm, max_mm, min_deg,
    max_deg)``)."""
    qa_dir = Path(qa_dir)
    ranges = dict(ranges or {})
    steps = placed_steps(frame, order)
    outliers = step_outliers(steps)
    plots = [
        _plot_pair(
            rows, pair, ranges.get(pair), qa_dir / "plots" / f"steps_{pair.replace('/', '_')}.png"
        )
        for pair, rows in steps.groupby("pair", sort=False)
    ]
    enriched = frame.assign(
        study_month=frame.get("study_date", pd.Series("", index=frame.index)).str[:6]
    )
    if headers is not None and not headers.empty:
        enriched = enriched.merge(headers, on="sop_instance_uid", how="left")
    for column in HEADER_COLUMNS:
        if column not in enriched:
            enriched[column] = ""
        enriched[column] = enriched[column].fillna("").replace("", "(not recorded)")
    rates = {
        by: flag_rates(enriched, by)
        for by in ("landmark", "study_month", "site", "scanner", "sequence")
    }
    flagged_images = (
        frame[frame["status"] == FLAGGED]
        .groupby(["partition_key", "sop_instance_uid"])["landmark"]
        .apply(", ".join)
        .reset_index()
    )
    sections = [
        "<h1>Label dataset QA</h1>",
        f"<p>{frame['sop_instance_uid'].nunique()} images, {len(frame)} landmarks, "
        f"{int((frame['status'] == FLAGGED).sum())} flagged; {len(steps)} steps between "
        f"adjacent placed vertebrae; {len(outliers)} outlier steps.</p>",
        "<h2>Step distances and angles per pair</h2>",
        *(f'<img src="plots/{html.escape(p.name)}" alt="{html.escape(p.stem)}">' for p in plots),
        f"<h2>Outliers for this dataset (|robust z| &gt; {OUTLIER_Z})</h2>",
        _table(outliers),
        "<h2>Flagged share per landmark</h2>",
        _table(rates["landmark"]),
        "<h2>Flagged share per study month</h2>",
        _table(rates["study_month"]),
        "<h2>Flagged share per site, scanner and sequence</h2>",
        _table(rates["site"]),
        _table(rates["scanner"]),
        _table(rates["sequence"]),
        "<h2>Images with flagged landmarks</h2>",
        _table(flagged_images),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Label dataset QA</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:1100px}"
        "table{border-collapse:collapse;margin:6px 0 16px}td,th{padding:3px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}img{display:block;margin:8px 0}</style>"
        "</head><body>" + "\n".join(sections) + "</body></html>\n"
    )
    path = atomic_write(qa_dir / "report.html", lambda temporary: temporary.write_text(page))
    return QAReport(path=path, steps=steps, outliers=outliers, rates=rates, plots=plots)
