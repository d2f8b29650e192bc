"""Review overlays: the labelled image with its landmarks drawn, as PNG.

The image is windowed by percentiles (1st to 99th of its pixel values, robust to a few bright
pixels), MONOCHROME1 inverted so that it looks like MONOCHROME2, and enlarged by an integer
factor so that names stay legible on small images. Vertebrae are filled circles, discs small
diamonds; green = ok, orange = needs review (name followed by "?"), and for reviewed labels
blue = corrected, light green = confirmed. Landmarks without a position are listed in the
top-left corner. With a ``partition_key``, a strip below the image names the study's partition
key and lists each landmark that is not ``ok`` with its status, confidence and reason, so that
the PNG can be reviewed outside the app. Nothing but the pixels, landmark names, statuses and
the pseudonymous partition key is drawn: no patient data.

:func:`write_overlay_index` writes ``overlays/index.html``: every overlay of the label dataset,
flagged images first.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.dicom import image_key
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.result import OK, LandmarkResult

OK_COLOUR = (40, 210, 60)
REVIEW_COLOUR = (255, 150, 0)
STATUS_COLOURS = {
    "ok": OK_COLOUR,
    "needs_review": REVIEW_COLOUR,
    "corrected": (80, 195, 247),
    "confirmed": (165, 232, 135),
    "not_in_view": (160, 160, 160),
}
_SUFFIX = {"needs_review": "?", "not_in_view": " (not in view)"}
MIN_LONG_SIDE = 512  # pixels of the output's longer side, reached by integer enlargement
WINDOW_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class _Mark:
    name: str
    kind: str
    x: float
    y: float
    status: str
    reason: str = ""
    confidence: float = math.nan


def window_to_uint8(image: LabelImage) -> np.ndarray:
    """The image's pixels windowed to 0..255 (uint8), MONOCHROME1 inverted."""
    pixels = np.asarray(image.pixels, dtype=np.float64)
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return np.zeros(pixels.shape, dtype=np.uint8)
    low, high = np.percentile(finite, WINDOW_PERCENTILES)
    if high <= low:  # nearly constant image: use the full range, or show it black
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        scaled = np.zeros(pixels.shape)
    else:
        scaled = np.clip((np.nan_to_num(pixels, nan=low) - low) / (high - low), 0.0, 1.0)
    grey = np.round(scaled * 255.0).astype(np.uint8)
    if image.photometric_interpretation == "MONOCHROME1":  # low values are bright: invert
        grey = 255 - grey
    return grey


def _marks(landmarks: Sequence[LandmarkResult] | pd.DataFrame) -> list[_Mark]:
    if isinstance(landmarks, pd.DataFrame):
        return [
            _Mark(
                str(r["landmark"]),
                str(r["kind"]),
                float(r["x"]),
                float(r["y"]),
                str(r["status"]),
                str(r.get("reason", "") or ""),
                float(r.get("confidence", math.nan)),
            )
            for r in landmarks.to_dict("records")
        ]
    return [
        _Mark(r.name, r.kind, float(r.x), float(r.y), r.status, r.reason, float(r.confidence))
        for r in landmarks
    ]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed-size bitmap font
        return ImageFont.load_default()


def _text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    colour: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    # A black outline keeps the text readable on bright and dark anatomy alike.
    draw.text(xy, text, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))


def overlay_scale(rows: int, columns: int) -> int:
    """Integer enlargement so that the longer side reaches :data:`MIN_LONG_SIDE` pixels."""
    return max(1, math.ceil(MIN_LONG_SIDE / max(rows, columns, 1)))


def render_overlay_image(
    image: LabelImage,
    landmarks: Sequence[LandmarkResult] | pd.DataFrame,
    scale: int | None = None,
    partition_key: str | None = None,
) -> Image.Image:
    """The overlay as an RGB Pillow image of (rows * scale) x (columns * scale) pixels, plus
    the caption strip below when ``partition_key`` is given.

    ``landmarks`` are :class:`LandmarkResult` objects or label rows (columns ``landmark, kind,
    x, y, status``, optionally ``reason, confidence``); x = column and y = row in pixels of
    ``image``.
    """
    scale = scale or overlay_scale(image.rows, image.columns)
    if scale < 1:
        raise ValueError(f"overlay scale must be a positive integer, got {scale}")
    grey = Image.fromarray(window_to_uint8(image))  # uint8 2-D: mode "L"
    if scale > 1:
        grey = grey.resize((image.columns * scale, image.rows * scale), Image.Resampling.BILINEAR)
    canvas = grey.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    font_size = max(10, 4 * scale + 2)
    font = _font(font_size)
    radius = max(3, round(2 * scale))
    missing: list[str] = []
    marks = _marks(landmarks)
    for mark in marks:
        colour = STATUS_COLOURS.get(mark.status, REVIEW_COLOUR)
        label = mark.name + _SUFFIX.get(mark.status, "")
        if not (math.isfinite(mark.x) and math.isfinite(mark.y)):
            missing.append(label)
            continue
        # Pixel (x, y) covers [x*s, (x+1)*s) after enlargement: its centre is (x + 0.5) * s.
        cx, cy = (mark.x + 0.5) * scale, (mark.y + 0.5) * scale
        if mark.kind == "disc":
            r = max(2, round(radius * 0.75))
            draw.polygon(
                [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)],
                fill=colour,
                outline=(0, 0, 0),
            )
        else:
            r = radius
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=(0, 0, 0))
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font, stroke_width=2)
        width, height = right - left, bottom - top
        # Discs are named on the left of their mark, vertebrae on the right, so that the names
        # of a disc and its neighbouring vertebrae do not overlap.
        text_x = cx - r - 3 - width if mark.kind == "disc" else cx + r + 3
        _text(draw, (text_x - left, cy - height / 2 - top), label, colour, font)
    if missing:
        _text(draw, (4, 4), "not found: " + ", ".join(missing), REVIEW_COLOUR, font)
    if partition_key is not None:
        canvas = _with_caption(canvas, partition_key, marks, _font(max(12, font_size - 2)))
    return canvas


def _caption_lines(partition_key: str, marks: list[_Mark]) -> list[tuple[str, tuple]]:
    flagged = [m for m in marks if m.status != OK]
    lines: list[tuple[str, tuple]] = [
        (f"{partition_key}: {len(marks) - len(flagged)} ok, {len(flagged)} not ok", (230,) * 3)
    ]
    for mark in flagged:
        confidence = f", {mark.confidence:.2f}" if math.isfinite(mark.confidence) else ""
        reason = f": {mark.reason}" if mark.reason else ""
        lines.append(
            (
                f"{mark.name} ({mark.status}{confidence}){reason}",
                STATUS_COLOURS.get(mark.status, REVIEW_COLOUR),
            )
        )
    return lines


def _with_caption(
    canvas: Image.Image,
    partition_key: str,
    marks: list[_Mark],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> Image.Image:
    lines = _caption_lines(partition_key, marks)
    probe = ImageDraw.Draw(canvas)
    height = max(probe.textbbox((0, 0), "Ag", font=font)[3], 1) + 6
    # Wrap long reasons at the image's width so that nothing is cut off.
    wrapped: list[tuple[str, tuple]] = []
    for text, colour in lines:
        words, current = text.split(" "), ""
        for word in words:
            trial = f"{current} {word}".strip()
            if current and probe.textlength(trial, font=font) > canvas.width - 12:
                wrapped.append((current, colour))
                current = "  " + word
            else:
                current = trial
        wrapped.append((current, colour))
    out = Image.new("RGB", (canvas.width, canvas.height + height * len(wrapped) + 8), (20, 20, 24))
    out.paste(canvas, (0, 0))
    draw = ImageDraw.Draw(out)
    for index, (text, colour) in enumerate(wrapped):
        draw.text((6, canvas.height + 4 + index * height), text, fill=colour, font=font)
    return out


def render_overlay(
    image: LabelImage,
    landmarks: Sequence[LandmarkResult] | pd.DataFrame,
    path: Path,
    scale: int | None = None,
    partition_key: str | None = None,
) -> Path:
    """Draw the overlay (:func:`render_overlay_image`) and write it to ``path`` as PNG,
    atomically; returns ``path``. The same inputs always give the same bytes."""
    canvas = render_overlay_image(image, landmarks, scale, partition_key)
    # zlib level 1: a fifth of the default level's encoding time (which was most of an
    # overlay's cost) for files about a quarter larger.
    return atomic_write(
        Path(path), lambda temporary: canvas.save(temporary, format="PNG", compress_level=1)
    )


def write_overlay_index(overlays_dir: Path, labels: pd.DataFrame) -> Path:
    """Write ``overlays_dir/index.html``: one entry per labelled image of ``labels`` (its
    overlay ``<image key>.png``, the SOPInstanceUID for a well-formed UID), images with the
    most flagged landmarks first, each with its partition key, date and flagged landmarks."""
    overlays_dir = Path(overlays_dir)
    entries = []
    for sop, rows in labels.groupby("sop_instance_uid", sort=True):
        candidate = overlays_dir / f"{image_key(str(sop))}.png"
        png = candidate if candidate.exists() else None
        flagged = rows[rows["status"] != OK]
        entries.append(
            {
                "png": png.name if png else "",
                "partition_key": str(rows["partition_key"].iloc[0]),
                "study_date": str(rows.get("study_date", pd.Series([""])).iloc[0]),
                "flagged": [f"{r.landmark} ({r.status})" for r in flagged.itertuples()],
            }
        )
    entries.sort(key=lambda e: (-len(e["flagged"]), e["partition_key"]))
    cards = []
    for entry in entries:
        state = "flagged" if entry["flagged"] else "ok"
        detail = ", ".join(entry["flagged"]) or "all ok"
        image = (
            f'<a href="{html.escape(entry["png"])}"><img src="{html.escape(entry["png"])}" '
            f'loading="lazy" alt=""></a>'
            if entry["png"]
            else "<p>(no overlay)</p>"
        )
        cards.append(
            f'<div class="card {state}"><b>{html.escape(entry["partition_key"])}</b> '
            f"{html.escape(entry['study_date'])}<br><small>{html.escape(detail)}</small>"
            f"{image}</div>"
        )
    flagged_count = sum(1 for e in entries if e["flagged"])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Overlays</title><style>"
        "body{font:14px system-ui,sans-serif;margin:18px;background:#1b1d21;color:#eee}"
        ".grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:280px;padding:8px;"
        "background:#262a30;border-top:4px solid #3ccf5a}.card.flagged{border-color:#ff9a1f}"
        "img{width:100%;margin-top:6px}small{color:#d9b27c}</style></head><body>"
        f"<h1>Overlays</h1><p>{len(entries)} images, {flagged_count} with flagged landmarks "
        "(first).</p><div class='grid'>" + "".join(cards) + "</div></body></html>\n"
    )
    return atomic_write(overlays_dir / "index.html", lambda temporary: temporary.write_text(page))
