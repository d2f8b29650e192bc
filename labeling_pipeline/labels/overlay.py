"""Review overlays: the labelled image with its landmarks drawn, as PNG.

The image is windowed by percentiles (1st to 99th of its pixel values, robust to a few bright
pixels), MONOCHROME1 inverted so that it looks like MONOCHROME2, and enlarged by an integer
factor so that names stay legible on small images. Vertebrae are filled circles, discs small
diamonds; green = ok, orange = needs review (name followed by "?"). Landmarks without a
position are listed in the top-left corner. Nothing but the pixels and landmark names is drawn:
no patient data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.result import OK, LandmarkResult

OK_COLOUR = (40, 210, 60)
REVIEW_COLOUR = (255, 150, 0)
MIN_LONG_SIDE = 512  # pixels of the output's longer side, reached by integer enlargement
WINDOW_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class _Mark:
    name: str
    kind: str
    x: float
    y: float
    status: str


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
                str(r["landmark"]), str(r["kind"]), float(r["x"]), float(r["y"]), str(r["status"])
            )
            for r in landmarks.to_dict("records")
        ]
    return [_Mark(r.name, r.kind, float(r.x), float(r.y), r.status) for r in landmarks]


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
) -> Image.Image:
    """The overlay as an RGB Pillow image of (rows * scale) x (columns * scale) pixels.

    ``landmarks`` are :class:`LandmarkResult` objects or label rows (columns ``landmark, kind,
    x, y, status``); x = column and y = row in pixels of ``image``.
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
    for mark in _marks(landmarks):
        colour = OK_COLOUR if mark.status == OK else REVIEW_COLOUR
        label = mark.name if mark.status == OK else f"{mark.name}?"
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
    return canvas


def render_overlay(
    image: LabelImage,
    landmarks: Sequence[LandmarkResult] | pd.DataFrame,
    path: Path,
    scale: int | None = None,
) -> Path:
    """Draw the overlay (:func:`render_overlay_image`) and write it to ``path`` as PNG,
    atomically; returns ``path``. The same inputs always give the same bytes."""
    canvas = render_overlay_image(image, landmarks, scale)
    return atomic_write(Path(path), lambda temporary: canvas.save(temporary, format="PNG"))
