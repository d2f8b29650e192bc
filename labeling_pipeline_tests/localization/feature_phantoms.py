"""Hand-made feature maps of a sagittal lumbar spine, for testing the search without a CNN.

A :class:`SpineLayout` places vertebral-body centres along a smooth curve, caudal to cranial
(sacral segments S4, S3, S2 below S1, then S1, L5 ... T12, T11 and the look-alikes T10, T9), and
:func:`render` turns them into a :class:`FeatureMap` whose channels stand for what a real
feature extractor sees:

- ``body``: an elongated Gaussian per vertebral body, IDENTICAL for every vertebra from S1 to
  T9, so that lumbar and lower thoracic vertebrae are look-alikes, as on real images;
- ``disc``: a flat Gaussian between neighbouring bodies (none between the fused sacral
  segments);
- ``sacrum``: the sacrum, around S1 and below it only: what makes S1 (and L5 above it)
  distinctive;
- ``canal``: a band posterior to the bodies along the whole spine (the spinal canal);
- ``background``: weak and constant, so that every cell has a direction;
- a few ``texture`` channels: small deterministic noise (also added to every channel).

Every cell's vector has unit norm, as :class:`FeatureMap` requires.

Coordinates: "grid mm" are feature-grid (x, y) (column, row) times ``MM_PER_CELL``; one cell is
``CELL_PX`` original pixels of 1 mm (``PixelTransform.for_resampling(4, 4)``), so original pixel
``x_pix = (x_mm / 4 + 0.5) * 4 - 0.5``. Angles are those of a step against the image's upward
direction (-y), positive towards +x (posterior), as in the domain knowledge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.imaging.transform import PixelTransform
from labeling_pipeline.localization.template import TemplateLandmark, TemplateLandmarks

CELL_PX = 4  # original pixels per grid cell
PIXEL_MM = 1.0  # original pixel spacing (mm)
MM_PER_CELL = CELL_PX * PIXEL_MM
TRANSFORM = PixelTransform.for_resampling(CELL_PX, CELL_PX)  # grid (x, y) -> original pixels
SETTINGS = {
    "model": "phantom",
    "weights_sha256": "0",
    "layers": [0],
    "stride": CELL_PX,
    "preparation": {"mm_per_pixel": PIXEL_MM},
}
#: Bodies drawn, caudal to cranial from S1 (the sacral segments below S1 are added apart).
SPINE = ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9")
SACRAL_BELOW = ("S2", "S3", "S4")
CANAL_MM = 26.0  # canal centre posterior of the body centres
#: The vertebrae the lumbar domain knows, caudal to cranial.
DOMAIN_VERTEBRAE = ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11")
CHANNELS = ("body", "disc", "sacrum", "canal", "background", "texture1", "texture2", "texture3")


@dataclass(frozen=True)
class SpineLayout:
    """Where the spine lies in one hand-made feature map.

    ``rows``, ``cols``: grid size in cells of ``MM_PER_CELL`` mm. ``s1_mm``: S1 body centre in
    grid mm (may lie outside the grid: then S1 is out of view). ``spacing_mm``: centre-to-centre
    distance of neighbouring bodies. ``tilt_deg``: angle of the L4 -> L3 step (rotates the whole
    spine). ``turn_deg``: change of direction from one step to the next going up (lordosis
    turning into kyphosis; larger = more curved). ``absent``: bodies ("L3") or discs ("L2-L3")
    not drawn (a vertebra that does not look like one). ``decoys``: where (grid mm) to put the
    L5 of extra copies of this spine's L4, L5 and sacrum, away from the spine and
    ``decoy_gain`` times stronger than it (look-alikes of the first landmark). ``seed``, ``noise``,
    ``spacing_jitter_mm``: the deterministic noise and the per-level variation of the spacing.
    """

    rows: int = 72
    cols: int = 56
    s1_mm: tuple[float, float] = (112.0, 252.0)
    spacing_mm: float = 36.0
    tilt_deg: float = 0.0
    turn_deg: float = 6.0
    absent: tuple[str, ...] = ()
    decoys: tuple[tuple[float, float], ...] = ()
    decoy_gain: float = 1.5
    seed: int = 0
    noise: float = 0.04
    spacing_jitter_mm: float = 1.5

    def centres_mm(self) -> dict[str, tuple[float, float]]:
        """Body centres (grid mm) of S4 ... S1 ... T9."""
        rng = np.random.default_rng([self.seed, 1])
        centres = {"S1": self.s1_mm}
        x, y = self.s1_mm
        for k, name in enumerate(SPINE[1:]):
            angle = math.radians(self.step_angle_deg(k))
            step = self.spacing_mm + float(rng.uniform(-1, 1)) * self.spacing_jitter_mm
            x, y = x + step * math.sin(angle), y - step * math.cos(angle)
            centres[name] = (x, y)
        # The sacrum bends posteriorly below S1; its segments shrink.
        x, y = self.s1_mm
        angle = math.radians(self.step_angle_deg(0) + 35.0)
        for name, step in zip(SACRAL_BELOW, (28.0, 22.0, 18.0), strict=True):
            x, y = x - step * math.sin(angle), y + step * math.cos(angle)
            centres[name] = (x, y)
            angle += math.radians(15.0)
        return centres

    def step_angle_deg(self, k: int) -> float:
        """Angle of step k (k = 0: S1 -> L5, 1: L5 -> L4, ...)."""
        return self.tilt_deg + self.turn_deg * (k - 2)

    def discs_mm(self) -> dict[str, tuple[float, float]]:
        """Disc centres (grid mm), named "<upper>-<lower>", midway between the bodies."""
        centres = self.centres_mm()
        return {
            f"{upper}-{lower}": (
                0.5 * (centres[upper][0] + centres[lower][0]),
                0.5 * (centres[upper][1] + centres[lower][1]),
            )
            for lower, upper in zip(SPINE, SPINE[1:], strict=False)
        }

    def size_mm(self) -> tuple[float, float]:
        return self.cols * MM_PER_CELL, self.rows * MM_PER_CELL

    def in_view(self, x_mm: float, y_mm: float) -> bool:
        """Whether a centre lies inside the image, which covers grid mm -2 .. size - 2 (pixel
        edges at -0.5 .. size - 0.5 pixels)."""
        width, height = self.size_mm()
        edge = -0.5 * MM_PER_CELL
        return edge <= x_mm <= width + edge and edge <= y_mm <= height + edge

    def truth(self) -> dict[str, tuple[float, float]]:
        """True positions (original pixels) of the domain's vertebrae whose centre is in view
        (the tests cut vertebrae off well away from their centre, so that this is clear)."""
        centres = self.centres_mm()
        return {
            name: to_pixels(*centres[name])
            for name in DOMAIN_VERTEBRAE
            if self.in_view(*centres[name])
        }


def to_pixels(x_mm: float, y_mm: float) -> tuple[float, float]:
    """Grid mm to original pixels (through the maps' own transform)."""
    x, y = TRANSFORM.to_original(x_mm / MM_PER_CELL, y_mm / MM_PER_CELL)
    return float(x), float(y)


def _oriented_gaussian(
    xs: np.ndarray,
    ys: np.ndarray,
    centre: tuple[float, float],
    angle_deg: float,
    sigma_along: float,
    sigma_across: float,
) -> np.ndarray:
    """Gaussian with ``sigma_along`` along the spine axis at ``angle_deg`` (against up) and
    ``sigma_across`` across it (all mm)."""
    angle = math.radians(angle_deg)
    ux, uy = math.sin(angle), -math.cos(angle)  # along the spine, cranially
    dx, dy = xs - centre[0], ys - centre[1]
    along = dx * ux + dy * uy
    across = -dx * uy + dy * ux
    return np.exp(-0.5 * ((along / sigma_along) ** 2 + (across / sigma_across) ** 2))


def _polyline_distance(xs: np.ndarray, ys: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance (mm) of every (xs, ys) to the polyline through ``points`` (N, 2)."""
    best = np.full(np.broadcast(xs, ys).shape, np.inf)
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:], strict=True):
        vx, vy = bx - ax, by - ay
        t = np.clip(((xs - ax) * vx + (ys - ay) * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
        best = np.minimum(best, np.hypot(xs - ax - t * vx, ys - ay - t * vy))
    return best


def _axis_angles(centres: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Direction of the spine at each body (mean of its two adjacent steps), degrees."""
    chain = [*reversed(SACRAL_BELOW), *SPINE]
    angles = {}
    for i, name in enumerate(chain):
        lo, hi = chain[max(i - 1, 0)], chain[min(i + 1, len(chain) - 1)]
        (x0, y0), (x1, y1) = centres[lo], centres[hi]
        angles[name] = math.degrees(math.atan2(x1 - x0, -(y1 - y0)))
    return angles


def _draw(
    channels: dict[str, np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    centres: dict[str, tuple[float, float]],
    angles: dict[str, float],
    bodies: tuple[str, ...],
    discs: tuple[tuple[str, str], ...],
    gain: float = 1.0,
) -> None:
    """Add ``bodies`` (names in :data:`SPINE`), ``discs`` ((lower, upper) pairs), the sacrum
    (S1 and the segments below it among ``centres``) and the canal along all of ``centres``."""
    for name in bodies:
        channels["body"] += gain * _oriented_gaussian(
            xs, ys, centres[name], angles[name], 9.0, 14.0
        )
    for lower, upper in discs:
        (x0, y0), (x1, y1) = centres[lower], centres[upper]
        angle = math.degrees(math.atan2(x1 - x0, -(y1 - y0)))
        middle = (0.5 * (x0 + x1), 0.5 * (y0 + y1))
        channels["disc"] += gain * _oriented_gaussian(xs, ys, middle, angle, 3.5, 13.0)
    for name in ("S1", *SACRAL_BELOW):
        if name in centres:
            channels["sacrum"] += gain * _oriented_gaussian(
                xs, ys, centres[name], angles[name], 11.0, 15.0
            )
    # The canal: 26 mm posterior of the body centres, down into the upper sacrum.
    path = [n for n in (*reversed(SACRAL_BELOW[:2]), *SPINE) if n in centres]
    canal = [
        (
            centres[n][0] + CANAL_MM * math.cos(math.radians(angles[n])),
            centres[n][1] + CANAL_MM * math.sin(math.radians(angles[n])),
        )
        for n in path
    ]
    distance = _polyline_distance(xs, ys, np.asarray(canal))
    channels["canal"] += gain * np.exp(-0.5 * (distance / 4.0) ** 2)


def render(layout: SpineLayout) -> FeatureMap:
    """The feature map of ``layout`` (channels :data:`CHANNELS`, unit norm per cell)."""
    ys = (np.arange(layout.rows, dtype=np.float64) * MM_PER_CELL)[:, None]
    xs = (np.arange(layout.cols, dtype=np.float64) * MM_PER_CELL)[None, :]
    centres = layout.centres_mm()
    angles = _axis_angles(centres)
    channels = {name: np.zeros((layout.rows, layout.cols)) for name in CHANNELS}
    bodies = tuple(n for n in SPINE if n not in layout.absent)
    discs = tuple(
        (lower, upper)
        for lower, upper in zip(SPINE, SPINE[1:], strict=False)
        if f"{upper}-{lower}" not in layout.absent
    )
    _draw(channels, xs, ys, centres, angles, bodies, discs)
    for decoy in layout.decoys:
        # A copy of this spine's own L4, L5 and sacrum, moved so that L5 lies at the decoy
        # centre and drawn ``decoy_gain`` times stronger (cleaner) than the spine itself.
        dx, dy = decoy[0] - centres["L5"][0], decoy[1] - centres["L5"][1]
        part = ("L4", "L5", "S1", *SACRAL_BELOW)
        moved = {n: (centres[n][0] + dx, centres[n][1] + dy) for n in part}
        _draw(
            channels,
            xs,
            ys,
            moved,
            angles,
            ("L4", "L5", "S1"),
            (("L5", "L4"), ("S1", "L5")),
            layout.decoy_gain,
        )

    channels["background"][:] = 0.2
    rng = np.random.default_rng([layout.seed, 2])
    stack = np.stack([channels[name] for name in CHANNELS])
    stack += rng.normal(0.0, layout.noise, stack.shape)
    features = (stack / np.linalg.norm(stack, axis=0, keepdims=True)).astype(np.float32)
    return FeatureMap(
        features=features,
        transform=TRANSFORM,
        mm_per_cell=MM_PER_CELL,
        settings=dict(SETTINGS),
    )


#: The template's layout: average lordosis, L1 ... S1 well inside, T12 at the top edge.
TEMPLATE_LAYOUT = SpineLayout(rows=64, cols=56, s1_mm=(118.0, 226.0), seed=100)
TEMPLATE_VERTEBRAE = ("L1", "L2", "L3", "L4", "L5", "S1")
TEMPLATE_DISCS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


def template(
    layout: SpineLayout = TEMPLATE_LAYOUT,
    vertebrae: tuple[str, ...] = TEMPLATE_VERTEBRAE,
    discs: tuple[str, ...] = TEMPLATE_DISCS,
    region: str = "lumbar",
) -> tuple[FeatureMap, TemplateLandmarks]:
    """The template's feature map and its landmarks (vertebrae then discs, original pixels)."""
    centres, disc_centres = layout.centres_mm(), layout.discs_mm()
    landmarks = [
        TemplateLandmark(name, "vertebra", *to_pixels(*centres[name])) for name in vertebrae
    ]
    landmarks += [TemplateLandmark(name, "disc", *to_pixels(*disc_centres[name])) for name in discs]
    return render(layout), TemplateLandmarks(region=region, landmarks=tuple(landmarks))


def shifted(layout: SpineLayout, dx_mm: float = 0.0, dy_mm: float = 0.0, **changes) -> SpineLayout:
    """``layout`` with the spine moved by (dx, dy) mm and other fields changed."""
    x, y = layout.s1_mm
    return replace(layout, s1_mm=(x + dx_mm, y + dy_mm), **changes)


def cropped(layout: SpineLayout, top: int = 0, bottom: int = 0) -> SpineLayout:
    """``layout`` with ``top`` and ``bottom`` rows of cells cut off the field of view (the
    spine stays where it is in the patient; grid mm shift with the new top edge)."""
    x, y = layout.s1_mm
    return replace(layout, rows=layout.rows - top - bottom, s1_mm=(x, y - top * MM_PER_CELL))
