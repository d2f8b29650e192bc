"""COCO keypoints export of the curated dataset (or the label dataset).

One category per region (``lumbar``, ``cervical``; from a ``region`` column when the labels
have one, else the ``region`` argument) whose ``keypoints`` are its landmark names in head-to-feet
order and whose ``skeleton`` links each landmark to the next (1-based, as COCO counts). One image
and one annotation per labelled image: ``keypoints`` is ``[x, y, v] * K`` with ``x, y`` pixel
indices (x = column), ``v = 2`` for a placed landmark (``ok``, ``corrected``, ``confirmed``) and
``v = 0`` with ``x = y = 0`` for one that is flagged or not in view. ``bbox`` spans the placed
landmarks with a margin. The labelled slices are written as 8-bit PNG (windowed over the 1st to
99th percentile, MONOCHROME1 inverted) under ``images/`` beside the JSON, named by their image
key, which is COCO's ``file_name``.

Dates: ``keep`` writes each image's study date (``YYYY-MM-DD``) and partition key; ``year``
writes only the year and leaves the partition key out (it starts with the full date), since
full dates count as identifiers under common de-identification rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.labels.overlay import window_to_uint8
from labeling_pipeline.labels.qa import DEFAULT_ORDER

PLACED = ("ok", "corrected", "confirmed")
BOX_MARGIN_PX = 8.0
IMAGES_DIR = "images"


class DatePrecision(StrEnum):
    KEEP = "keep"
    YEAR = "year"


def _rank(name: str, kind: str, order: Sequence[str]) -> float:
    """Head-to-feet rank: cranial vertebrae first, each disc just below its upper vertebra."""
    position = {n: len(order) - i for i, n in enumerate(order)}  # cranial = small
    if kind == "disc":
        parts = [position[p] for p in name.split("-") if p in position]
        return (min(parts) + max(parts)) / 2 if parts else math.inf
    return float(position.get(name, math.inf))


def keypoint_order(frame: pd.DataFrame, order: Sequence[str] = DEFAULT_ORDER) -> list[str]:
    """The landmark names of ``frame`` from head to feet (unknown names last, as found)."""
    kinds = dict(zip(frame["landmark"], frame["kind"], strict=False))
    names = list(dict.fromkeys(frame["landmark"]))
    return sorted(names, key=lambda n: (_rank(n, kinds[n], order), names.index(n)))


def _date(study_date: str, precision: DatePrecision) -> str:
    if len(study_date) != 8 or not study_date.isdigit():
        return ""
    if precision == DatePrecision.YEAR:
        return study_date[:4]
    return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"


def build_coco(
    frame: pd.DataFrame,
    file_names: dict[str, str],
    region: str = "lumbar",
    dates: DatePrecision | str = DatePrecision.KEEP,
) -> dict[str, Any]:
    """The COCO document for ``frame`` (curated or label rows); ``file_names`` maps each
    SOPInstanceUID to its image's ``file_name``."""
    dates = DatePrecision(dates)
    regions = frame["region"] if "region" in frame else pd.Series(region, index=frame.index)
    categories, category_of = [], {}
    for number, name in enumerate(sorted(set(regions)), start=1):
        names = keypoint_order(frame[regions == name])
        categories.append(
            {
                "id": number,
                "name": name,
                "supercategory": "spine",
                "keypoints": names,
                "skeleton": [[i, i + 1] for i in range(1, len(names))],
            }
        )
        category_of[name] = categories[-1]
    images, annotations = [], []
    for number, (sop, rows) in enumerate(frame.groupby("sop_instance_uid", sort=True), start=1):
        first = rows.iloc[0]
        category = category_of[regions[rows.index[0]]]
        image = {
            "id": number,
            "file_name": file_names[sop],
            "width": int(first["columns"]),
            "height": int(first["rows"]),
            "date_captured": _date(str(first.get("study_date", "")), dates),
            "sop_instance_uid": sop,
        }
        if dates == DatePrecision.KEEP:
            image["partition_key"] = str(first["partition_key"])
        images.append(image)
        by_name = {r["landmark"]: r for r in rows.to_dict("records")}
        keypoints: list[float] = []
        placed = []
        for name in category["keypoints"]:
            row = by_name.get(name)
            visible = (
                row is not None
                and row["status"] in PLACED
                and math.isfinite(row["x"])
                and math.isfinite(row["y"])
            )
            if visible:
                keypoints += [round(float(row["x"]), 3), round(float(row["y"]), 3), 2]
                placed.append((float(row["x"]), float(row["y"])))
            else:
                keypoints += [0, 0, 0]
        if placed:
            xs, ys = [p[0] for p in placed], [p[1] for p in placed]
            left = max(min(xs) - BOX_MARGIN_PX, 0.0)
            top = max(min(ys) - BOX_MARGIN_PX, 0.0)
            right = min(max(xs) + BOX_MARGIN_PX, image["width"] - 1.0)
            bottom = min(max(ys) + BOX_MARGIN_PX, image["height"] - 1.0)
            bbox = [round(left, 3), round(top, 3), round(right - left, 3), round(bottom - top, 3)]
        else:
            bbox = [0.0, 0.0, 0.0, 0.0]
        annotations.append(
            {
                "id": number,
                "image_id": number,
                "category_id": category["id"],
                "keypoints": keypoints,
                "num_keypoints": len(placed),
                "bbox": bbox,
                "area": round(bbox[2] * bbox[3], 3),
                "iscrowd": 0,
            }
        )
    return {
        "info": {
            "description": "Vertebra and disc landmarks (labeling_pipeline)",
            "version": "1",
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def export_coco(
    frame: pd.DataFrame,
    load_image: Callable[[str], LabelImage],
    output: Path,
    region: str = "lumbar",
    dates: DatePrecision | str = DatePrecision.KEEP,
    image_key: Callable[[str], str] = lambda sop: sop,
) -> dict[str, Any]:
    """Write ``output`` (JSON) and the labelled slices as PNG under ``images/`` beside it;
    returns the document. ``load_image`` gives the labelled image of a SOPInstanceUID."""
    output = Path(output)
    file_names = {}
    for sop in sorted(set(frame["sop_instance_uid"])):
        name = f"{IMAGES_DIR}/{image_key(sop)}.png"
        grey = Image.fromarray(window_to_uint8(load_image(sop)))
        atomic_write(output.parent / name, lambda temporary, g=grey: g.save(temporary, "PNG"))
        file_names[sop] = name
    document = build_coco(frame, file_names, region, dates)
    text = json.dumps(document, indent=1)
    atomic_write(output, lambda temporary: temporary.write_text(text))
    return document
