"""Making a template in the review app: the order in which landmarks are clicked, and writing
``template/template.dcm`` with ``template/landmarks.json`` (the README's format).

The previous template is copied to ``<output>/template_history/<UTC time>/`` first, so making
a new one never loses the old one. The image is copied byte for byte; its labelled frame must
be the one the pipeline reads from the template file (a single frame, or the middle frame of a
multi-frame file), else the landmarks would belong to another frame.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labeling_pipeline.anatomy import DomainKnowledge, load_domain
from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.localization.template import (
    TemplateError,
    TemplateLandmarks,
    parse_template_landmarks,
)

TEMPLATE_IMAGE = "template.dcm"
TEMPLATE_LANDMARKS = "landmarks.json"


def click_order(domain: DomainKnowledge) -> list[dict[str, str]]:
    """Every vertebra and disc of the region from head to feet (the order they appear from the
    top of a sagittal image down): each vertebra followed by the disc below it."""
    below = {cranial: disc for disc, (cranial, _caudal) in domain.discs.items()}
    sequence = []
    for vertebra in reversed(domain.order):
        sequence.append({"name": vertebra, "kind": "vertebra"})
        if vertebra in below:
            sequence.append({"name": below[vertebra], "kind": "disc"})
    return sequence


def known_regions(domain_dir: Path) -> dict[str, list[dict[str, str]]]:
    """The click order of every region with domain knowledge (data directory or packaged)."""
    names = {"lumbar", "cervical"} | {p.stem for p in Path(domain_dir).glob("*.yaml")}
    regions = {}
    for name in sorted(names):
        try:
            regions[name] = click_order(load_domain(name, domain_dir))
        except ValueError:  # an unusable domain file is reported by the pipeline itself
            continue
    return regions


def build_landmarks(
    region: str, clicked: Sequence[Mapping[str, Any]], domain: DomainKnowledge
) -> TemplateLandmarks:
    """The landmarks document for ``clicked`` points (``{"name", "x", "y"}``), validated:
    names must be the region's, kinds follow from the names."""
    kinds = {item["name"]: item["kind"] for item in click_order(domain)}
    unknown = [str(item.get("name")) for item in clicked if item.get("name") not in kinds]
    if unknown:
        raise TemplateError(f"landmarks {unknown} are not part of the {region} region")
    document = {
        "region": region,
        "landmarks": [
            {
                "name": str(item["name"]),
                "kind": kinds[str(item["name"])],
                "x": round(float(item["x"]), 3),
                "y": round(float(item["y"]), 3),
            }
            for item in clicked
        ],
    }
    return parse_template_landmarks(document)


def save_template(
    template_dir: Path,
    source: Path,
    frame_index: int,
    landmarks: TemplateLandmarks,
    history_dir: Path,
) -> dict[str, Path]:
    """Write ``source`` (DICOM) and ``landmarks`` as the template; returns the written paths
    (and ``previous``, the copy of the old template, when there was one).

    Refuses when the template file would show another frame than ``frame_index`` or a
    landmark lies outside the image.
    """
    source = Path(source)
    chosen = read_label_image(source, frame_index=frame_index)
    as_template = read_label_image(source)
    if as_template.frame_index != chosen.frame_index or not np.array_equal(
        as_template.pixels, chosen.pixels
    ):
        raise TemplateError(
            f"frame {frame_index} of {source.name} is not the frame a template file shows "
            f"(frame {as_template.frame_index}); pick a single-frame image"
        )
    for lm in landmarks.landmarks:
        if not (-0.5 <= lm.x <= chosen.columns - 0.5 and -0.5 <= lm.y <= chosen.rows - 0.5):
            raise TemplateError(f"landmark {lm.name} ({lm.x}, {lm.y}) lies outside the image")
    template_dir = Path(template_dir)
    written: dict[str, Path] = {}
    old = [template_dir / TEMPLATE_IMAGE, template_dir / TEMPLATE_LANDMARKS]
    if any(p.exists() for p in old):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        previous = Path(history_dir) / stamp
        previous.mkdir(parents=True, exist_ok=False)
        for path in old:
            if path.exists():
                shutil.copy2(path, previous / path.name)
        written["previous"] = previous
    data = source.read_bytes()
    written["image"] = atomic_write(
        template_dir / TEMPLATE_IMAGE, lambda temporary: temporary.write_bytes(data)
    )
    document = {
        "region": landmarks.region,
        "landmarks": [
            {"name": lm.name, "kind": lm.kind, "x": lm.x, "y": lm.y} for lm in landmarks.landmarks
        ],
    }
    text = json.dumps(document, indent=1) + "\n"
    written["landmarks"] = atomic_write(
        template_dir / TEMPLATE_LANDMARKS, lambda temporary: temporary.write_text(text)
    )
    return written
