"""Synthetic sagittal lumbar spine MR images (T2-weighted look) with exact ground truth.

The phantom is built in a world frame in millimetres whose axes are the image axes
(``X`` to the right = towards the patient's back, ``Y`` down = towards the feet) with the
origin at the L3 body centre. Vertebrae are a chain of rigid, rounded, slightly wedged and
concave "bodies" (T9 ... L5, the five fused sacral segments and two coccygeal ones), each
rotated to the local direction of the spine; discs fill the wedge between neighbouring
endplates. Soft tissues (spinal canal, posterior elements, muscle, fat, abdomen) are laid out in
curvilinear coordinates ``(s, n)`` along a smooth centreline through the body centres:
``s`` is the arc length in mm (downwards), ``n`` the signed distance in mm from the centreline
(positive = posterior).

Ground truth, in pixels of the rendered image (``x`` = column, ``y`` = row, pixel centres at
integer coordinates):

- a vertebra (``T11``, ``T12``, ``L1`` ... ``L5``, ``S1`` = first sacral segment) is at the
  centroid of its body on the image (the part inside the field of view), computed on a 4x
  supersampled grid from the same shape that is rendered; it is reported when at least half of
  the body is visible;
- a disc (``T11-T12`` ... ``L5-S1``) is at the midpoint between the centres of the two bony
  endplates that bound it; it is reported when that point lies at least 2 pixels inside the image.

Pure numpy/scipy, deterministic for a given :class:`PhantomParams`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labeling_pipeline.synthetic.geometry import Segment, SpineGeometry, build_spine, placement
from labeling_pipeline.synthetic.params import PhantomParams, random_params
from labeling_pipeline.synthetic.render import acquire, render
from labeling_pipeline.synthetic.spine_tables import labelled_discs, labelled_vertebrae


@dataclass
class Phantom:
    """A rendered phantom image with its ground truth.

    ``pixels``: uint16, 12-bit values (0..4095), rows x columns. ``pixel_spacing_mm``:
    (row spacing, column spacing). ``landmarks``: name -> (x, y, kind) in pixels, x = column,
    y = row, kind "vertebra" or "disc"; only landmarks inside the field of view (see the module
    docstring). ``tissue``: tissue class per pixel (``TISSUE_*``); ``vertebra_index``: 0 outside
    bodies, else 1 + index into ``segment_names(params.lumbar_count)``. ``visibility``:
    fraction of each labelled body that lies inside the image. ``lateral_offset_mm``: slice
    position off the mid-sagittal plane (0 for the slice the truth is defined on).
    """

    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    landmarks: dict[str, tuple[float, float, str]]
    params: PhantomParams
    tissue: np.ndarray
    vertebra_index: np.ndarray
    visibility: dict[str, float] = field(default_factory=dict)
    lateral_offset_mm: float = 0.0

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])


# --- Ground truth -----------------------------------------------------------------------------


def _body_centroid(
    seg: Segment, params: PhantomParams, c0: float, r0: float
) -> tuple[float, float, float]:
    """Centroid (x, y, pixels) of the body's visible part, and the visible fraction of its area.

    Evaluated on a 4x supersampled pixel grid over the body's bounding box, with the same
    outline that is rendered.
    """
    sy, sx = params.pixel_spacing_mm
    corners = seg.corners()
    cols = c0 + corners[:, 0] / sx
    rows = r0 + corners[:, 1] / sy
    sub = 4
    xs = np.arange(math.floor(cols.min()) - 2, math.ceil(cols.max()) + 2, 1.0 / sub) + 0.5 / sub
    ys = np.arange(math.floor(rows.min()) - 2, math.ceil(rows.max()) + 2, 1.0 / sub) + 0.5 / sub
    gx, gy = np.meshgrid(xs, ys)
    inside = seg.sdf((gx - c0) * sx, (gy - r0) * sy) < 0.0
    total = inside.sum()
    in_image = (gx > -0.5) & (gx < params.cols - 0.5) & (gy > -0.5) & (gy < params.rows - 0.5)
    visible = inside & in_image
    count = visible.sum()
    if count == 0:
        return math.nan, math.nan, 0.0
    return float(gx[visible].mean()), float(gy[visible].mean()), float(count / total)


def _ground_truth(
    geo: SpineGeometry, params: PhantomParams, c0: float, r0: float
) -> tuple[dict[str, tuple[float, float, str]], dict[str, float]]:
    sy, sx = params.pixel_spacing_mm
    landmarks: dict[str, tuple[float, float, str]] = {}
    visibility: dict[str, float] = {}
    for name in labelled_vertebrae(params.lumbar_count):
        x, y, frac = _body_centroid(geo.segment(name), params, c0, r0)
        visibility[name] = frac
        if frac >= 0.5:
            landmarks[name] = (x, y, "vertebra")
    for name in labelled_discs(params.lumbar_count):
        cx, cy = geo.disc(name).center
        x, y = c0 + cx / sx, r0 + cy / sy
        if 1.5 <= x <= params.cols - 2.5 and 1.5 <= y <= params.rows - 2.5:
            landmarks[name] = (x, y, "disc")
    vertebrae, discs = labelled_vertebrae(params.lumbar_count), labelled_discs(params.lumbar_count)
    order = [n for pair in zip(vertebrae, (*discs, ""), strict=True) for n in pair if n]
    ordered = {name: landmarks[name] for name in order if name in landmarks}
    return ordered, visibility


# --- The image --------------------------------------------------------------------------------


def make_phantom(params: PhantomParams, lateral_offset_mm: float = 0.0) -> Phantom:
    """Render the phantom for ``params``.

    ``lateral_offset_mm`` renders a parasagittal slice that far from the mid-sagittal plane
    (narrower canal, smaller spinous processes and bodies, the spine drifting by
    ``params.lateral_drift_mm`` per 100 mm); the ground truth is defined on the mid-sagittal
    slice (offset 0), which is also what ``landmarks`` reports for every offset.
    """
    geo = build_spine(params)
    c0, r0 = placement(params, geo)
    landmarks, visibility = _ground_truth(geo, params, c0, r0)
    signal, tissue, vindex = render(params, geo, c0, r0, lateral_offset_mm)
    pixels = acquire(params, signal, lateral_offset_mm)
    return Phantom(
        pixels=pixels,
        pixel_spacing_mm=(float(params.pixel_spacing_mm[0]), float(params.pixel_spacing_mm[1])),
        landmarks=landmarks,
        params=params,
        tissue=tissue,
        vertebra_index=vindex,
        visibility=visibility,
        lateral_offset_mm=float(lateral_offset_mm),
    )


def slice_offsets_mm(count: int, spacing_mm: float) -> list[float]:
    """Lateral positions (mm) of ``count`` parallel slices centred on the mid-sagittal plane.

    Slice ``k`` is at ``-(k - (count - 1) / 2) * spacing_mm``, i.e. at patient X for the
    sagittal orientation the DICOM writer uses, whose slice normal is -X: positions along the
    normal increase with ``k``. For an odd ``count`` the middle slice (``count // 2``) is at 0.
    """
    if count < 1 or spacing_mm <= 0:
        raise ValueError(f"need count >= 1 and spacing_mm > 0, got {count}, {spacing_mm}")
    return [-(k - (count - 1) / 2) * spacing_mm for k in range(count)]


def make_slices(params: PhantomParams, count: int = 5, spacing_mm: float = 4.0) -> list[Phantom]:
    """A stack of parallel sagittal slices at :func:`slice_offsets_mm`; with an odd ``count``
    the middle one is exactly ``make_phantom(params)`` (the slice the truth is defined on)."""
    return [make_phantom(params, offset) for offset in slice_offsets_mm(count, spacing_mm)]


def generate_cases(count: int, seed: int, **overrides: Any) -> list[Phantom]:
    """``count`` random phantoms; case ``i`` depends only on ``(seed, i)`` and ``overrides``."""
    if count < 0:
        raise ValueError(f"count must be >= 0: {count}")
    return [
        make_phantom(random_params(np.random.default_rng([seed, i]), **overrides))
        for i in range(count)
    ]
