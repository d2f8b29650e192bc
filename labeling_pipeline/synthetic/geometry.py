"""The spine's geometry in world millimetres: segments, discs and where the field of view
places them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from labeling_pipeline.synthetic.params import PhantomParams
from labeling_pipeline.synthetic.spine_tables import (
    AXIS_DEG,
    DEPTH_MM,
    DISC_BELOW_MM,
    HEIGHT_MM,
    SACRAL_REL_DEG,
    WEDGE_MM,
    segment_names,
    table_value,
)


def axis_vector(angle: float) -> np.ndarray:
    """Unit vector along a body axis (downwards) for ``angle`` radians from straight down."""
    return np.array([math.sin(angle), math.cos(angle)])


def normal_vector(angle: float) -> np.ndarray:
    """Unit vector across a body axis, pointing posteriorly (+X when the axis is vertical)."""
    return np.array([math.cos(angle), -math.sin(angle)])


@dataclass(frozen=True)
class Segment:
    """One vertebral body (or fused sacral/coccygeal segment) in world mm.

    Local coordinates: ``u`` along the axis (down), ``v`` across it (posterior), origin at
    ``center``. The outline is a rounded rectangle whose half-height varies linearly with ``v``
    (wedge) and whose endplates and anterior/posterior walls are slightly concave, all symmetric
    about ``v = 0`` so that an unwedged body's centroid is ``center``.
    """

    name: str
    center: np.ndarray
    angle: float  # radians from straight down
    height: float
    depth: float
    wedge: float = 0.0
    concavity: float = 0.8
    waist: float = 0.6
    corner: float = 3.5

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.center[0], y - self.center[1]
        s, c = math.sin(self.angle), math.cos(self.angle)
        return dx * s + dy * c, dx * c - dy * s

    def sdf(self, x: np.ndarray, y: np.ndarray, depth_factor: float = 1.0) -> np.ndarray:
        """Approximate signed distance (mm) to the outline, negative inside."""
        u, v = self.local(x, y)
        depth = self.depth * depth_factor
        vn = np.clip(v / (0.5 * depth), -1.0, 1.0)
        un = np.clip(u / (0.5 * self.height), -1.0, 1.0)
        half_h = 0.5 * self.height + 0.25 * self.wedge * vn - self.concavity * (1.0 - vn**2)
        half_d = 0.5 * depth - self.waist * (1.0 - un**2)
        r = min(self.corner, 0.45 * float(np.min(half_h)), 0.45 * depth)
        qx = np.abs(u) - half_h + r
        qy = np.abs(v) - half_d + r
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r

    @property
    def upper_endplate(self) -> np.ndarray:
        """Centre of the upper bony endplate (on the axis, at the bottom of its concavity)."""
        return self.center - (0.5 * self.height - self.concavity) * axis_vector(self.angle)

    @property
    def lower_endplate(self) -> np.ndarray:
        return self.center + (0.5 * self.height - self.concavity) * axis_vector(self.angle)

    def corners(self) -> np.ndarray:
        """The four outline corners (4 x 2, world mm), for bounding boxes."""
        t, n = axis_vector(self.angle), normal_vector(self.angle)
        hh = 0.5 * self.height + 0.25 * abs(self.wedge)
        hd = 0.5 * self.depth
        return np.array([self.center + a * hh * t + b * hd * n for a in (-1, 1) for b in (-1, 1)])


@dataclass(frozen=True)
class Disc:
    """The disc between two segments; ``center`` = midpoint of the two bony endplate centres."""

    name: str
    upper: Segment
    lower: Segment

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.upper.lower_endplate + self.lower.upper_endplate)

    @property
    def angle(self) -> float:
        return 0.5 * (self.upper.angle + self.lower.angle)

    @property
    def depth(self) -> float:
        return min(self.upper.depth, self.lower.depth)


@dataclass(frozen=True)
class SpineGeometry:
    """The chain of segments and discs in world mm (origin at the L3 centre, tilt applied)."""

    segments: tuple[Segment, ...]
    discs: tuple[Disc, ...]
    #: Dense centreline through the body centres (K x 2, world mm), extended beyond both ends.
    centerline: np.ndarray
    #: Arc length (mm) of each centreline point.
    arclength: np.ndarray
    #: Arc length of each segment centre (same order as ``segments``).
    segment_s: np.ndarray
    #: Smooth trunk axis through T9..L5, straight below (K x 2, mm); skin is laid out from it.
    trunk: np.ndarray
    #: Arc length along the trunk axis, 0 at the level of L3 (mm).
    trunk_s: np.ndarray

    def segment(self, name: str) -> Segment:
        return next(seg for seg in self.segments if seg.name == name)

    def disc(self, name: str) -> Disc:
        return next(d for d in self.discs if d.name == name)


def build_spine(params: PhantomParams) -> SpineGeometry:
    """Lay out the vertebral chain for ``params`` (world mm, image axes, origin at L3)."""
    rng = np.random.default_rng([params.seed, 101])
    lordosis = params.lordosis * (1.6 if params.strong_curvature else 1.0)
    sacral_extra = params.sacral_angle_deg + (8.0 if params.strong_curvature else 0.0)
    names = segment_names(params.lumbar_count)
    # A sixth lumbar vertebra continues the lordosis below L5.
    axis_deg = {**AXIS_DEG, "L6": 14.0} if params.lumbar_count == 6 else AXIS_DEG
    angles: dict[str, float] = {}
    for name in names:
        if name in axis_deg:
            base = axis_deg[name]
            # Lordosis scales the curve about L4 (the apex), where the axis is vertical.
            angles[name] = lordosis * base + rng.normal(0.0, 1.2)
        else:
            rel = SACRAL_REL_DEG[name] + sacral_extra
            angles[name] = angles[names[names.index("S1") - 1]] + rel + rng.normal(0.0, 1.0)

    segments: list[Segment] = []
    disc_gap: dict[str, float] = {}
    center = np.zeros(2)
    for i, name in enumerate(names):
        jitter = 1.0 + rng.normal(0.0, 0.025)
        height = table_value(HEIGHT_MM, name) * params.scale * jitter
        depth = table_value(DEPTH_MM, name) * params.scale * (1.0 + rng.normal(0.0, 0.025))
        wedge = WEDGE_MM.get(name, 0.0) * params.scale
        if name == params.fracture_level:
            # Anterior wedge compression: the anterior wall loses that share of its height,
            # the posterior wall keeps it.
            full = height
            height = full * (1.0 - 0.5 * params.fracture_fraction)
            wedge = full * params.fracture_fraction
        angle = math.radians(angles[name])
        if i > 0:
            prev = segments[-1]
            gap = table_value(DISC_BELOW_MM, prev.name) * params.scale
            if not prev.name.startswith(("S", "Co")):
                gap *= params.disc_height_factor * (1.0 + rng.normal(0.0, 0.06))
            if prev.name == params.collapsed_disc:
                gap = 2.5 * params.scale
            # A lordotic wedge closes the posterior side of the disc: keep >= 2 mm there.
            turn = abs(angle - prev.angle)
            gap = max(gap, 2.0 + 0.5 * min(depth, prev.depth) * math.sin(turn))
            disc_gap[prev.name] = gap
            lower_prev = prev.center + 0.5 * prev.height * axis_vector(prev.angle)
            upper = lower_prev + gap * axis_vector(0.5 * (prev.angle + angle))
            center = upper + 0.5 * height * axis_vector(angle)
        sacral = name.startswith(("S", "Co"))
        segments.append(
            Segment(
                name=name,
                center=center.copy(),
                angle=angle,
                height=height,
                depth=depth,
                wedge=wedge,
                concavity=(0.4 if sacral else 0.9) * params.scale,
                waist=(0.3 if sacral else 0.7) * params.scale,
                corner=(2.5 if sacral else 3.5) * params.scale,
            )
        )

    if params.slip_level and params.slip_mm:
        # Spondylolisthesis: the slipping vertebra and everything above it move anteriorly
        # (-normal) over the vertebra below.
        below = segments[names.index(params.slip_level) + 1]
        shift = -params.slip_mm * normal_vector(below.angle)
        top = names.index(params.slip_level)
        segments = [
            replace(seg, center=seg.center + shift) if k <= top else seg
            for k, seg in enumerate(segments)
        ]
    # Origin at L3, then the global tilt about it.
    origin = next(seg.center for seg in segments if seg.name == "L3").copy()
    theta = math.radians(params.tilt_deg)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    segments = [
        replace(seg, center=rot @ (seg.center - origin), angle=seg.angle + theta)
        for seg in segments
    ]
    discs = tuple(
        Disc(name=f"{upper.name}-{lower.name}", upper=upper, lower=lower)
        for upper, lower in zip(segments[:-1], segments[1:], strict=True)
    )

    # Centreline: through endplate centres and body centres, extended 400 mm beyond the ends,
    # resampled every 0.25 mm and lightly smoothed so that soft tissue bands bend smoothly.
    knots = []
    for seg in segments:
        t = axis_vector(seg.angle)
        knots += [seg.center - 0.5 * seg.height * t, seg.center, seg.center + 0.5 * seg.height * t]
    line, arclength = _dense_line(
        np.array(knots),
        axis_vector(segments[0].angle),
        axis_vector(segments[-1].angle),
        smooth_mm=4.0,
    )
    segment_s = arclength[cKDTree(line).query(np.array([seg.center for seg in segments]))[1]]
    # Trunk axis: a much smoother line through the mobile vertebrae that carries on straight
    # below L5; the skin of the back and of the belly are laid out from it.
    mobile = np.array([seg.center for seg in segments if not seg.name.startswith(("S", "Co"))])
    down = mobile[-1] - mobile[-3]
    up = mobile[0] - mobile[2]
    trunk, trunk_s = _dense_line(
        mobile, -up / np.linalg.norm(up), down / np.linalg.norm(down), smooth_mm=40.0
    )
    trunk_s = trunk_s - trunk_s[cKDTree(trunk).query(segments[names.index("L3")].center)[1]]
    return SpineGeometry(
        segments=tuple(segments),
        discs=discs,
        centerline=line,
        arclength=arclength,
        segment_s=segment_s,
        trunk=trunk,
        trunk_s=trunk_s,
    )


def _dense_line(
    knots: np.ndarray, head_dir: np.ndarray, tail_dir: np.ndarray, smooth_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Polyline through ``knots`` extended 400 mm at both ends, every 0.25 mm, smoothed.

    ``head_dir`` / ``tail_dir`` are the downward directions at the first / last knot.
    Returns the points (K x 2, mm) and their arc length (mm).
    """
    knots = np.vstack([knots[0] - 400.0 * head_dir, knots, knots[-1] + 400.0 * tail_dir])
    step = np.hypot(*np.diff(knots, axis=0).T)
    s_knots = np.concatenate([[0.0], np.cumsum(step)])
    s_dense = np.arange(0.0, s_knots[-1], 0.25)
    line = np.stack([np.interp(s_dense, s_knots, knots[:, k]) for k in range(2)], axis=1)
    line = ndimage.gaussian_filter1d(line, sigma=smooth_mm / 0.25, axis=0, mode="nearest")
    arclength = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(line, axis=0).T))])
    return line, arclength


# --- Placement in the field of view -----------------------------------------------------------


def placement(params: PhantomParams, geo: SpineGeometry) -> tuple[float, float]:
    """Pixel position (column, row) of the world origin (the L3 centre)."""
    sy, sx = params.pixel_spacing_mm
    fov_h = params.rows * sy
    # Horizontal: L3 centre between 40 % and 54 % of the width, leaving room for the back.
    c0 = (0.47 + 0.07 * params.fov_shift_x) * params.cols - 0.5

    def rows_of(names: tuple[str, ...]) -> np.ndarray:
        return np.concatenate([geo.segment(n).corners()[:, 1] for n in names])

    if params.missing:
        order = [seg.name for seg in geo.segments]
        names = set(params.missing)
        if "S1" in names:
            # Bottom edge just above the disc below the last kept vertebra.
            lowest_missing = min(names - {"T11", "T12"}, key=order.index)
            kept = order[order.index(lowest_missing) - 1]
            edge_y = geo.disc(f"{kept}-{lowest_missing}").center[1] - 1.5
            r_edge = params.rows - 0.5  # bottom border of the image, in rows
            return c0, r_edge - edge_y / sy
        highest = max(names - {"T11", "T12"}, key=order.index)
        kept = order[order.index(highest) + 1]
        edge_y = geo.disc(f"{highest}-{kept}").center[1] + 1.5
        return c0, -0.5 - edge_y / sy

    top = float(rows_of(("L1",)).min()) - 6.0
    bottom = float(rows_of(("S1",)).max()) + 6.0
    span = bottom - top
    frac = 0.5 * (params.fov_shift_y + 1.0)
    # If everything from L1 to S1 fits, slide the window within the slack; if the field of view
    # is too small, slide it within L1..S1 and let the ends fall off.
    top_edge = top - (fov_h - span) * (1.0 - frac) if span <= fov_h else top + (span - fov_h) * frac
    return c0, -0.5 - top_edge / sy
