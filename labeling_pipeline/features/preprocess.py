"""Pixel preparation that makes features comparable across scanners.

A :class:`~labeling_pipeline.imaging.image.LabelImage` carries pixels with the modality LUT
already applied (ingestion does that). Preparation then

1. maps intensities to [0, 1] with a robust window (the DICOM VOI window, or percentiles),
2. inverts MONOCHROME1 images so that "bright" means the same thing everywhere,
3. resamples to a fixed physical pixel size (``mm_per_pixel``, isotropic), so that a vertebra
   covers the same number of feature cells whatever the scanner's pixel spacing.

The exact geometric transform is kept (:class:`PixelTransform`, prepared (x, y) -> original
(x, y), x = column, y = row, pixel centres) so positions found on features map back exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.transform import PixelTransform

WindowMode = Literal["percentile", "dicom"]


@dataclass(frozen=True)
class PreparationSettings:
    """How images are prepared before feature extraction.

    ``mm_per_pixel``: physical size of one prepared pixel (mm, isotropic).
    ``window``: ``"percentile"`` maps the ``low_percentile``..``high_percentile`` intensity range
    of the image to [0, 1]; ``"dicom"`` uses the image's WindowCenter/WindowWidth (DICOM linear
    VOI function) and falls back to percentiles for images without a window.
    """

    mm_per_pixel: float = 1.0
    window: WindowMode = "percentile"
    low_percentile: float = 0.5
    high_percentile: float = 99.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mm_per_pixel) and self.mm_per_pixel > 0):
            raise ValueError(f"mm_per_pixel must be a positive number, got {self.mm_per_pixel!r}")
        if self.window not in ("percentile", "dicom"):
            raise ValueError(f"window must be 'percentile' or 'dicom', got {self.window!r}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                "percentiles must satisfy 0 <= low < high <= 100, got "
                f"{self.low_percentile!r}, {self.high_percentile!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded in feature settings."""
        return {
            "mm_per_pixel": float(self.mm_per_pixel),
            "window": str(self.window),
            "low_percentile": float(self.low_percentile),
            "high_percentile": float(self.high_percentile),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreparationSettings:
        names = asdict(cls()).keys()
        return cls(**{k: values[k] for k in names if k in values})


@dataclass
class PreparedImage:
    """An image ready for a feature extractor.

    ``pixels``: float32 (rows, columns) in [0, 1], bright = high signal.
    ``transform``: prepared (x, y) -> original image (x, y), pixel centres.
    ``mm_per_pixel``: physical size of a prepared pixel (mm, isotropic).
    ``intensity_window``: the (low, high) original intensities mapped to 0 and 1.
    ``window_source``: ``"dicom"`` or ``"percentile"``, which window was actually used.
    """

    pixels: np.ndarray
    transform: PixelTransform
    mm_per_pixel: float
    intensity_window: tuple[float, float] = (0.0, 1.0)
    window_source: str = "percentile"


def intensity_window(image: LabelImage, settings: PreparationSettings) -> tuple[float, float, str]:
    """The (low, high) intensities that map to 0 and 1, and which source gave them.

    For the DICOM window this follows the linear VOI LUT of PS3.3 C.11.2.1.2: values at or below
    ``c - 0.5 - (w - 1) / 2`` map to 0, values above ``c - 0.5 + (w - 1) / 2`` map to 1.
    """
    if (
        settings.window == "dicom"
        and image.window_center is not None
        and image.window_width is not None
        and math.isfinite(image.window_center)
        and math.isfinite(image.window_width)
        and image.window_width >= 1.0
    ):
        c, w = float(image.window_center), float(image.window_width)
        return c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0, "dicom"
    values = np.asarray(image.pixels, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"image {image.sop_instance_uid}: no finite pixel values")
    low, high = np.percentile(finite, [settings.low_percentile, settings.high_percentile])
    return float(low), float(high), "percentile"


def _resampling_matrix(n_in: int, n_out: int, scale: float) -> sparse.csr_array:
    """Sparse (n_out, n_in) linear-interpolation matrix for one axis.

    Output sample ``i`` sits at input coordinate ``i * scale + 0.5 * scale - 0.5`` (pixel centres,
    the convention of :meth:`PixelTransform.for_resampling`). When shrinking (``scale > 1``) the
    triangle kernel is widened by ``scale`` so that it averages (anti-aliasing). Weights falling
    outside the image are dropped and the rest renormalised (edges are not darkened).
    """
    centres = np.arange(n_out, dtype=np.float64) * scale + 0.5 * scale - 0.5
    support = max(scale, 1.0)
    # Banded: only inputs within the kernel support of each output get a weight.
    width = int(math.ceil(support)) + 1
    first = np.floor(centres - support).astype(np.int64)
    cols = first[:, None] + np.arange(2 * width + 1)[None, :]
    weights = np.clip(1.0 - np.abs(cols - centres[:, None]) / support, 0.0, None)
    weights[(cols < 0) | (cols >= n_in)] = 0.0
    totals = weights.sum(axis=1)
    # A sample beyond the image (possible on the rounded last row) takes the nearest pixel.
    empty = totals <= 0
    if np.any(empty):
        weights[empty] = 0.0
        cols[empty, 0] = np.clip(np.rint(centres[empty]), 0, n_in - 1).astype(np.int64)
        weights[empty, 0] = 1.0
        totals = weights.sum(axis=1)
    weights /= totals[:, None]
    rows = np.repeat(np.arange(n_out), cols.shape[1])
    keep = weights.ravel() > 0
    matrix = sparse.coo_array(
        (weights.ravel()[keep].astype(np.float32), (rows[keep], cols.ravel()[keep])),
        shape=(n_out, n_in),
    )
    return matrix.tocsr()


def resample(pixels: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Resample a 2-D image so that one output pixel spans ``scale`` input pixels per axis.

    The output has ``max(1, round(n / scale))`` pixels per axis; output (x, y) maps to input
    (x, y) by ``PixelTransform.for_resampling(scale_x, scale_y)``.
    """
    rows, cols = pixels.shape
    out_rows = max(1, int(round(rows / scale_y)))
    out_cols = max(1, int(round(cols / scale_x)))
    ry = _resampling_matrix(rows, out_rows, scale_y)
    rx = _resampling_matrix(cols, out_cols, scale_x)
    tmp = ry @ pixels.astype(np.float32)  # (out_rows, cols)
    return np.ascontiguousarray((rx @ tmp.T).T, dtype=np.float32)


def prepare_image(image: LabelImage, settings: PreparationSettings) -> PreparedImage:
    """Window, invert (MONOCHROME1) and resample ``image`` to ``settings.mm_per_pixel``.

    Uses ``image.pixel_spacing_mm`` (row spacing, column spacing), ``photometric_interpretation``
    and ``window_center``/``window_width``. The original image is not modified.
    """
    pixels = np.asarray(image.pixels)
    if pixels.ndim != 2 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(
            f"image {image.sop_instance_uid}: expected 2-D pixels, got shape {pixels.shape}"
        )
    row_mm, col_mm = (float(v) for v in image.pixel_spacing_mm)
    if not (math.isfinite(row_mm) and math.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(
            f"image {image.sop_instance_uid}: invalid pixel spacing {image.pixel_spacing_mm!r}"
        )

    low, high, source = intensity_window(image, settings)
    values = np.nan_to_num(pixels.astype(np.float32), nan=low, posinf=high, neginf=low)
    if high > low:
        scaled = (values - np.float32(low)) / np.float32(high - low)
    else:  # constant image: nothing to show, keep it black rather than divide by zero
        scaled = np.zeros_like(values)
    scaled = np.clip(scaled, 0.0, 1.0)
    if image.photometric_interpretation.strip().upper() == "MONOCHROME1":
        # MONOCHROME1 displays low values bright; invert so bright means high signal everywhere.
        scaled = 1.0 - scaled

    # One prepared pixel spans mm_per_pixel / spacing original pixels along each axis (exactly,
    # so the physical pixel size is exact and the last prepared pixel may overhang by < 1 pixel).
    scale_x = settings.mm_per_pixel / col_mm
    scale_y = settings.mm_per_pixel / row_mm
    if abs(scale_x - 1.0) < 1e-9 and abs(scale_y - 1.0) < 1e-9:
        prepared = np.ascontiguousarray(scaled, dtype=np.float32)
        transform = PixelTransform()
    else:
        prepared = np.clip(resample(scaled, scale_x, scale_y), 0.0, 1.0)
        transform = PixelTransform.for_resampling(scale_x, scale_y)
    return PreparedImage(
        pixels=prepared,
        transform=transform,
        mm_per_pixel=float(settings.mm_per_pixel),
        intensity_window=(float(low), float(high)),
        window_source=source,
    )
