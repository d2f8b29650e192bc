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
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

# --- Anatomy tables ---------------------------------------------------------------------------

#: Every segment drawn, top to bottom. Only some of them are labelled.
VERTEBRAE: tuple[str, ...] = (
    "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5",
    "S1", "S2", "S3", "S4", "S5", "Co1", "Co2",
)  # fmt: skip
#: Vertebrae reported in the ground truth (S1 = centre of the first sacral body).
LABELLED_VERTEBRAE: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
#: Discs reported in the ground truth, named "<upper>-<lower>".
LABELLED_DISCS: tuple[str, ...] = (
    "T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1",
)  # fmt: skip

# Body height / depth (antero-posterior) in mm for scale 1, after published adult means
# (lumbar bodies 26-30 mm tall and 35-45 mm deep, lower thoracic a little smaller).
_HEIGHT_MM = {
    "T9": 21.5, "T10": 22.5, "T11": 24.0, "T12": 25.5, "L1": 27.0, "L2": 28.0, "L3": 28.5,
    "L4": 28.5, "L5": 28.0, "S1": 27.0, "S2": 22.0, "S3": 18.0, "S4": 15.0, "S5": 12.0,
    "Co1": 10.0, "Co2": 8.0,
}  # fmt: skip
_DEPTH_MM = {
    "T9": 29.0, "T10": 30.0, "T11": 31.5, "T12": 33.5, "L1": 35.5, "L2": 37.0, "L3": 38.5,
    "L4": 39.5, "L5": 40.5, "S1": 39.0, "S2": 30.0, "S3": 23.0, "S4": 18.0, "S5": 14.0,
    "Co1": 11.0, "Co2": 9.0,
}  # fmt: skip
# Height of the disc below each segment (mm); sacral/coccygeal ones are fused remnants.
_DISC_BELOW_MM = {
    "T9": 5.0, "T10": 5.5, "T11": 6.0, "T12": 7.0, "L1": 8.5, "L2": 9.5, "L3": 10.0,
    "L4": 10.5, "L5": 10.0, "S1": 2.0, "S2": 1.6, "S3": 1.4, "S4": 1.2, "S5": 2.0, "Co1": 1.5,
}  # fmt: skip
# Direction of each body's axis (degrees from straight down; positive = the lower end turned
# towards +X, the back). Thoracolumbar kyphosis turns into lumbar lordosis and the sacrum turns
# sharply backwards at L5-S1. Lumbar values are scaled by the lordosis parameter.
_AXIS_DEG = {
    "T9": -8.0, "T10": -11.0, "T11": -13.5, "T12": -15.5, "L1": -16.0, "L2": -13.0,
    "L3": -7.5, "L4": 0.0, "L5": 8.0,
}  # fmt: skip
# Sacral/coccygeal axis relative to L5 (degrees), before sacral_angle_deg is added.
# The sacrum leaves L5 steeply backwards (sacral slope ~40 deg) and curves forwards again
# towards the coccyx (sacral kyphosis, concave anteriorly).
_SACRAL_REL_DEG = {
    "S1": 30.0, "S2": 28.0, "S3": 20.0, "S4": 8.0, "S5": -4.0, "Co1": -18.0, "Co2": -30.0,
}  # fmt: skip
# Wedge (posterior minus anterior height, mm): T12/L1 are slightly anteriorly wedged, L5 and S1
# posteriorly.
_WEDGE_MM = {"T11": 1.0, "T12": 1.5, "L1": 1.2, "L4": -0.5, "L5": -2.0, "S1": -3.0}


def segment_names(lumbar_count: int = 5) -> tuple[str, ...]:
    """Every segment drawn, top to bottom; six lumbar vertebrae add "L6" above the sacrum."""
    if lumbar_count == 5:
        return VERTEBRAE
    split = VERTEBRAE.index("S1")
    return (*VERTEBRAE[:split], "L6", *VERTEBRAE[split:])


def labelled_vertebrae(lumbar_count: int = 5) -> tuple[str, ...]:
    """Vertebrae reported in the ground truth for ``lumbar_count`` lumbar vertebrae."""
    return tuple(n for n in segment_names(lumbar_count) if n in (*LABELLED_VERTEBRAE, "L6"))


def labelled_discs(lumbar_count: int = 5) -> tuple[str, ...]:
    """Discs reported in the ground truth, "<upper>-<lower>", top to bottom."""
    names = labelled_vertebrae(lumbar_count)
    return tuple(f"{a}-{b}" for a, b in zip(names, names[1:], strict=False))


def _table(table: dict[str, float], name: str) -> float:
    """Anatomy table lookup; the transitional "L6" is drawn like L5."""
    return table["L5" if name == "L6" and name not in table else name]


# Tissue classes of Phantom.tissue.
TISSUE_AIR = 0
TISSUE_SOFT = 1
TISSUE_FAT = 2
TISSUE_MUSCLE = 3
TISSUE_BODY = 4
TISSUE_DISC = 5
TISSUE_CANAL = 6
TISSUE_POSTERIOR_BONE = 7
TISSUE_VESSEL = 8


# --- Parameters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhantomParams:
    """Everything that defines one phantom image; :func:`random_params` draws them all.

    Lengths in mm, angles in degrees, ``pixel_spacing_mm`` = (row spacing, column spacing).
    Signal levels are relative to cerebrospinal fluid (= 1.0) before ``intensity_scale``.
    ``seed`` drives the small per-case details (textures, per-level jitter, disc hydration,
    noise, bias field), so equal params give identical pixels.
    """

    seed: int = 0
    rows: int = 256
    cols: int = 256
    pixel_spacing_mm: tuple[float, float] = (1.0, 1.0)
    #: Multiplies every vertebra and disc dimension (body size of the person).
    scale: float = 1.0
    #: Multiplies the segmental angles of the thoracolumbar curve (1 = average lordosis).
    lordosis: float = 1.0
    #: Exaggerates the curve (lordosis x 1.6 and a steeper sacrum): a hard case.
    strong_curvature: bool = False
    #: Added to the sacrum's angle relative to L5 (sacral slope variation).
    sacral_angle_deg: float = 0.0
    #: Rotation of the whole spine in the image plane; positive turns the downward axis to +x.
    tilt_deg: float = 0.0
    #: Horizontal position of L3 in the field of view, -1 (40 % of the width) ... 1 (54 %).
    fov_shift_x: float = 0.0
    #: Vertical position of the spine in the field of view, -1 (high) ... 1 (low).
    fov_shift_y: float = 0.0
    #: Labelled vertebrae the field of view must cut off: a run from the top ending at L1..L3
    #: (e.g. ("L1",) or ("L1", "L2"); T11/T12 go with it) or a run at the bottom ending at S1
    #: (e.g. ("S1",) or ("L5", "S1")). Empty: the field of view is placed to show L1..S1 when
    #: it is large enough.
    missing: tuple[str, ...] = ()
    #: Multiplies the disc heights.
    disc_height_factor: float = 1.0
    #: Antero-posterior width of the dural sac (mm).
    canal_width_mm: float = 15.0
    #: Distance from the spine's centreline to the skin of the back at L3 (mm).
    back_depth_mm: float = 95.0
    #: Thickness of subcutaneous fat on the back (mm).
    fat_thickness_mm: float = 14.0
    #: Marrow signal relative to CSF.
    marrow_signal: float = 0.48
    #: Fat signal relative to CSF (bright on fast spin echo T2).
    fat_signal: float = 0.78
    #: Muscle signal relative to CSF.
    muscle_signal: float = 0.28
    #: Stored value of CSF before noise and bias (12-bit range, 0..4095).
    intensity_scale: float = 2600.0
    #: Standard deviation of the complex noise, relative to the CSF level (Rician magnitude).
    noise_level: float = 0.03
    #: Strength of the smooth multiplicative bias field (log-amplitude, about its std).
    bias_strength: float = 0.12
    #: Surface-coil falloff: relative signal gain from the front to the back of the image.
    coil_gradient: float = 0.2
    #: Gaussian point-spread of the scanner, in pixels.
    blur_px: float = 0.55
    #: How far the spine drifts out of the slice plane per 100 mm down (mm), used for
    #: neighbouring slices of a series; 0 keeps the spine in plane.
    lateral_drift_mm: float = 0.0
    #: Draw the aorta (flow void) in front of the upper lumbar spine.
    show_aorta: bool = True
    # --- Contrast beyond the T2 look (defaults keep the T2 fast spin echo appearance) ---
    #: Fluid (CSF, bladder) signal relative to the T2 look (T1: ~0.2, dark fluid).
    fluid_signal: float = 1.0
    #: Disc signal relative to the T2 look (T1: ~0.45, discs dark).
    disc_signal: float = 1.0
    #: How much brighter the nucleus is than the annulus (1 = T2; 0 = uniform, as on T1).
    nucleus_contrast: float = 1.0
    # --- Pathology and anatomical variants (defaults: none) ---
    #: Vertebra that slips anteriorly over the one below (spondylolisthesis), e.g. "L5" or "L4".
    slip_level: str = ""
    #: Anterior translation of ``slip_level`` and everything above it (mm).
    slip_mm: float = 0.0
    #: Vertebra with an anterior wedge compression fracture.
    fracture_level: str = ""
    #: Loss of anterior height of the fractured body (share of its height).
    fracture_fraction: float = 0.0
    #: Vertebra whose disc below is collapsed (degenerated, about 2-3 mm, dark).
    collapsed_disc: str = ""
    #: Out-of-plane (scoliotic) bow of the lumbar spine: largest lateral deviation (mm).
    lateral_bow_mm: float = 0.0
    #: Lumbar vertebrae: 5, or 6 (transitional anatomy, an extra "L6" above the sacrum).
    lumbar_count: int = 5

    def __post_init__(self) -> None:
        if self.rows < 32 or self.cols < 32:
            raise ValueError(f"image must be at least 32 x 32 pixels: {self.rows} x {self.cols}")
        if len(self.pixel_spacing_mm) != 2 or min(self.pixel_spacing_mm) <= 0:
            raise ValueError(
                f"pixel_spacing_mm needs two positive numbers: {self.pixel_spacing_mm}"
            )
        if not 0.3 <= self.scale <= 2.0:
            raise ValueError(f"scale must be in [0.3, 2]: {self.scale}")
        if self.lumbar_count not in (5, 6):
            raise ValueError(f"lumbar_count must be 5 or 6: {self.lumbar_count}")
        if not 0.0 <= self.fracture_fraction <= 0.6:
            raise ValueError(f"fracture_fraction must be in [0, 0.6]: {self.fracture_fraction}")
        names = segment_names(self.lumbar_count)
        for label, level in (
            ("slip_level", self.slip_level),
            ("fracture_level", self.fracture_level),
            ("collapsed_disc", self.collapsed_disc),
        ):
            if level and level not in names[: names.index("S1")]:
                raise ValueError(f"{label} must name a mobile vertebra, got {level!r}")
        _check_missing(self.missing)

    @property
    def labelled_vertebrae(self) -> tuple[str, ...]:
        """The vertebrae its ground truth reports (with "L6" for six lumbar vertebrae)."""
        return labelled_vertebrae(self.lumbar_count)


def _check_missing(missing: tuple[str, ...]) -> None:
    if not missing:
        return
    names = set(missing)
    unknown = names - set(LABELLED_VERTEBRAE)
    if unknown:
        raise ValueError(f"missing names unknown vertebrae: {sorted(unknown)}")
    top_runs = [{"L1"}, {"L1", "L2"}, {"L1", "L2", "L3"}]
    bottom_runs = [{"S1"}, {"L5", "S1"}, {"L4", "L5", "S1"}]
    lumbar_sacral = names - {"T11", "T12"}
    if lumbar_sacral in top_runs or (lumbar_sacral in bottom_runs and not names & {"T11", "T12"}):
        return
    raise ValueError(
        f"missing must be a run cut off at the top (L1[, L2[, L3]], T11/T12 allowed) or at the "
        f"bottom (S1, L5+S1 or L4+L5+S1): {missing}"
    )


def random_params(rng: np.random.Generator, **overrides: Any) -> PhantomParams:
    """Draw plausible phantom parameters; keyword ``overrides`` replace any drawn field.

    Field of view 220-340 mm on 192-320 pixels (spacing kept within 0.6-1.2 mm), moderate tilt
    and lordosis, varied anatomy, contrast, noise and bias. Setting ``strong_curvature=True``,
    ``tilt_deg`` or ``missing`` in the overrides gives the hard cases.
    """
    unknown = set(overrides) - {f.name for f in fields(PhantomParams)}
    if unknown:
        raise TypeError(f"unknown PhantomParams fields: {sorted(unknown)}")
    rows = int(rng.choice([192, 208, 224, 240, 256, 288, 320]))
    fov_mm = float(rng.uniform(220.0, 340.0))
    spacing = float(np.clip(fov_mm / rows, 0.6, 1.2))
    cols = int(rows if rng.random() < 0.7 else 16 * round(rows * rng.uniform(0.8, 1.0) / 16))
    drawn = dict(
        seed=int(rng.integers(0, 2**31 - 1)),
        rows=rows,
        cols=max(cols, 160),
        pixel_spacing_mm=(round(spacing, 4), round(spacing, 4)),
        scale=float(rng.uniform(0.88, 1.12)),
        lordosis=float(rng.uniform(0.6, 1.3)),
        sacral_angle_deg=float(rng.uniform(-8.0, 8.0)),
        tilt_deg=float(rng.uniform(-8.0, 8.0)),
        fov_shift_x=float(rng.uniform(-1.0, 1.0)),
        fov_shift_y=float(rng.uniform(-1.0, 1.0)),
        disc_height_factor=float(rng.uniform(0.85, 1.15)),
        canal_width_mm=float(rng.uniform(12.0, 18.0)),
        back_depth_mm=float(rng.uniform(80.0, 115.0)),
        fat_thickness_mm=float(rng.uniform(6.0, 28.0)),
        marrow_signal=float(rng.uniform(0.38, 0.58)),
        fat_signal=float(rng.uniform(0.4, 0.9)),  # low end: fat-suppressed look
        muscle_signal=float(rng.uniform(0.22, 0.34)),
        intensity_scale=float(rng.uniform(1400.0, 3600.0)),
        noise_level=float(rng.uniform(0.012, 0.05)),
        bias_strength=float(rng.uniform(0.04, 0.2)),
        coil_gradient=float(rng.uniform(0.0, 0.45)),
        blur_px=float(rng.uniform(0.35, 0.8)),
        lateral_drift_mm=float(rng.uniform(-2.5, 2.5)),
        show_aorta=bool(rng.random() < 0.7),
    )
    drawn.update(overrides)
    if "missing" in drawn:
        drawn["missing"] = tuple(drawn["missing"])
    if "pixel_spacing_mm" in drawn:
        drawn["pixel_spacing_mm"] = tuple(float(v) for v in drawn["pixel_spacing_mm"])
    return PhantomParams(**drawn)


# --- Geometry ---------------------------------------------------------------------------------


def _axis(angle: float) -> np.ndarray:
    """Unit vector along a body axis (downwards) for ``angle`` radians from straight down."""
    return np.array([math.sin(angle), math.cos(angle)])


def _normal(angle: float) -> np.ndarray:
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
        return self.center - (0.5 * self.height - self.concavity) * _axis(self.angle)

    @property
    def lower_endplate(self) -> np.ndarray:
        return self.center + (0.5 * self.height - self.concavity) * _axis(self.angle)

    def corners(self) -> np.ndarray:
        """The four outline corners (4 x 2, world mm), for bounding boxes."""
        t, n = _axis(self.angle), _normal(self.angle)
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
    axis_deg = {**_AXIS_DEG, "L6": 14.0} if params.lumbar_count == 6 else _AXIS_DEG
    angles: dict[str, float] = {}
    for name in names:
        if name in axis_deg:
            base = axis_deg[name]
            # Lordosis scales the curve about L4 (the apex), where the axis is vertical.
            angles[name] = lordosis * base + rng.normal(0.0, 1.2)
        else:
            rel = _SACRAL_REL_DEG[name] + sacral_extra
            angles[name] = angles[names[names.index("S1") - 1]] + rel + rng.normal(0.0, 1.0)

    segments: list[Segment] = []
    disc_gap: dict[str, float] = {}
    center = np.zeros(2)
    for i, name in enumerate(names):
        jitter = 1.0 + rng.normal(0.0, 0.025)
        height = _table(_HEIGHT_MM, name) * params.scale * jitter
        depth = _table(_DEPTH_MM, name) * params.scale * (1.0 + rng.normal(0.0, 0.025))
        wedge = _WEDGE_MM.get(name, 0.0) * params.scale
        if name == params.fracture_level:
            # Anterior wedge compression: the anterior wall loses that share of its height,
            # the posterior wall keeps it.
            full = height
            height = full * (1.0 - 0.5 * params.fracture_fraction)
            wedge = full * params.fracture_fraction
        angle = math.radians(angles[name])
        if i > 0:
            prev = segments[-1]
            gap = _table(_DISC_BELOW_MM, prev.name) * params.scale
            if not prev.name.startswith(("S", "Co")):
                gap *= params.disc_height_factor * (1.0 + rng.normal(0.0, 0.06))
            if prev.name == params.collapsed_disc:
                gap = 2.5 * params.scale
            # A lordotic wedge closes the posterior side of the disc: keep >= 2 mm there.
            turn = abs(angle - prev.angle)
            gap = max(gap, 2.0 + 0.5 * min(depth, prev.depth) * math.sin(turn))
            disc_gap[prev.name] = gap
            lower_prev = prev.center + 0.5 * prev.height * _axis(prev.angle)
            upper = lower_prev + gap * _axis(0.5 * (prev.angle + angle))
            center = upper + 0.5 * height * _axis(angle)
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
        shift = -params.slip_mm * _normal(below.angle)
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
        t = _axis(seg.angle)
        knots += [seg.center - 0.5 * seg.height * t, seg.center, seg.center + 0.5 * seg.height * t]
    line, arclength = _dense_line(
        np.array(knots), _axis(segments[0].angle), _axis(segments[-1].angle), smooth_mm=4.0
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


def _placement(params: PhantomParams, geo: SpineGeometry) -> tuple[float, float]:
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


# --- Rendering helpers ------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: Any) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return field_ / (field_.std() + 1e-12)


def _curvilinear(
    line: np.ndarray, arclength: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Arc length ``s`` and signed distance ``n`` (mm) of points relative to a dense polyline.

    ``n`` is positive to the right of the downward direction (posterior). The nearest vertex is
    searched on the line decimated to 1 mm; ``s`` and ``n`` are then the tangential and normal
    components of the offset from it, which is exact to well below a pixel.
    """
    step = 4  # the dense lines are sampled every 0.25 mm
    coarse, s_coarse = line[::step], arclength[::step]
    tangent = np.gradient(coarse, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    _, idx = cKDTree(coarse).query(np.stack([x.ravel(), y.ravel()], axis=1))
    idx = idx.reshape(x.shape)
    dx, dy = x - coarse[idx, 0], y - coarse[idx, 1]
    tx, ty = tangent[idx, 0], tangent[idx, 1]
    return s_coarse[idx] + dx * tx + dy * ty, dx * ty - dy * tx


def _soft(sdf: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside mask (1 inside, 0 outside) from a signed distance in mm."""
    return 0.5 * (1.0 - np.tanh(sdf / width))


def _rounded_box(a: np.ndarray, b: np.ndarray, half_a: float, half_b: float, r: float):
    """Signed distance (mm) to an axis-aligned rounded box centred at a = b = 0."""
    r = min(r, 0.9 * half_a, 0.9 * half_b)
    qa, qb = np.abs(a) - half_a + r, np.abs(b) - half_b + r
    outside = np.hypot(np.maximum(qa, 0.0), np.maximum(qb, 0.0))
    return outside + np.minimum(np.maximum(qa, qb), 0.0) - r


def _ellipse_sdf(a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse with half-axes ``ra``, ``rb``."""
    return (np.hypot(a / ra, b / rb) - 1.0) * min(ra, rb)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union of two signed distances (blend radius ``k`` mm)."""
    return -k * np.logaddexp(-a / k, -b / k)


def _along(x: np.ndarray, y: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Component (mm) of ``(x, y) - origin`` along the unit vector ``direction``."""
    return (x - origin[0]) * direction[0] + (y - origin[1]) * direction[1]


def _band(n: np.ndarray, low: np.ndarray | float, high: np.ndarray | float, width: float):
    return _soft(np.maximum(low - n, n - high), width)


class _Canvas:
    """Painter's-algorithm compositing of signal and tissue class."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.signal = np.zeros(shape)
        self.tissue = np.full(shape, TISSUE_AIR, dtype=np.uint8)

    def paint(self, mask: np.ndarray, value: np.ndarray | float, tissue: int | None = None) -> None:
        self.signal += mask * (value - self.signal)
        if tissue is not None:
            self.tissue[mask > 0.5] = tissue


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
    c0, r0 = _placement(params, geo)
    landmarks, visibility = _ground_truth(geo, params, c0, r0)
    signal, tissue, vindex = _render(params, geo, c0, r0, lateral_offset_mm)
    pixels = _acquire(params, signal, lateral_offset_mm)
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


def _render(
    params: PhantomParams, geo: SpineGeometry, c0: float, r0: float, lateral_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free relative signal (CSF = 1), tissue classes and body indices."""
    rng = np.random.default_rng([params.seed, 202])
    # Textures that change slowly between neighbouring slices: mix a base field with a
    # slice-specific one.
    slice_rng = np.random.default_rng([params.seed, 303, int(round(lateral_mm * 10)) & 0xFFFF])
    mix = min(abs(lateral_mm) / 12.0, 1.0)
    sy, sx = params.pixel_spacing_mm
    shape = (params.rows, params.cols)
    jj, ii = np.meshgrid(np.arange(params.cols, dtype=float), np.arange(params.rows, dtype=float))
    X, Y = (jj - c0) * sx, (ii - r0) * sy
    edge = 0.45 * min(sx, sy)  # anti-aliasing width (mm)

    def texture(sigma_mm: float | tuple[float, float]) -> np.ndarray:
        sig = np.atleast_1d(sigma_mm) / np.array([sy, sx])
        base = _smooth_noise(rng, shape, sig)
        if mix == 0.0:
            return base
        other = _smooth_noise(slice_rng, shape, sig)
        return math.cos(mix * math.pi / 2) * base + math.sin(mix * math.pi / 2) * other

    # Curvilinear coordinates along the spine's centreline and along the trunk axis.
    s, n = _curvilinear(geo.centerline, geo.arclength, X, Y)
    s_t, n_t = _curvilinear(geo.trunk, geo.trunk_s, X, Y)

    names = [seg.name for seg in geo.segments]
    s_of = dict(zip(names, geo.segment_s, strict=True))
    s_l3 = s_of["L3"]

    def lateral_at(s_mm: Any) -> Any:
        """Distance (mm) of the spine's mid-plane from this slice at arc length ``s_mm``."""
        drift = lateral_mm + params.lateral_drift_mm * (s_mm - s_l3) / 100.0
        if not params.lateral_bow_mm:
            return drift
        # Scoliosis seen sagittally: the lumbar spine bows out of the plane between T12 and S1.
        t = np.clip((np.asarray(s_mm) - s_of["T12"]) / (s_of["S1"] - s_of["T12"]), 0.0, 1.0)
        return drift + params.lateral_bow_mm * np.sin(np.pi * t)

    def lateral_factor(z: np.ndarray | float, half_width: float) -> np.ndarray | float:
        return np.sqrt(np.clip(1.0 - (np.asarray(z) / half_width) ** 2, 0.0, 1.0))

    half_depth = np.interp(s, geo.segment_s, [0.5 * seg.depth for seg in geo.segments])
    z_s = lateral_at(s)
    canal_w = np.interp(
        s,
        [s_of["T9"], s_of["L1"], s_of["L5"], s_of["S1"], s_of["S2"], s_of["S3"], s_of["S4"]],
        np.array([0.9, 1.0, 1.0, 0.8, 0.55, 0.35, 0.0]) * params.canal_width_mm * params.scale,
    ) * lateral_factor(z_s, 11.0 * params.scale)

    canvas = _Canvas(shape)

    # Abdomen / pelvis in front: heterogeneous bowel and fat, smooth at large scale.
    loops = np.tanh(1.5 * texture(8.0))
    abdomen = 0.38 + 0.06 * texture(25.0) + 0.07 * loops + 0.03 * texture(2.5)
    gas = _soft(2.3 - texture(6.0), 0.3)  # rare dark gas pockets
    abdomen = abdomen * (1.0 - 0.6 * gas)
    canvas.paint(np.ones(shape), abdomen, TISSUE_SOFT)
    # Psoas / prevertebral muscle just in front of the bodies (blends into the abdomen).
    pre = _band(n, -half_depth - 14.0, -half_depth, 3.0)
    canvas.paint(0.6 * pre, params.muscle_signal * 1.3 * (1.0 + 0.08 * texture(2.0)))
    # Anterior abdominal wall: fat then air, usually outside a lumbar field of view.
    front = 160.0 + 40.0 * (rng.random() - 0.5)
    canvas.paint(_soft(n_t + front - 18.0, 2.0), params.fat_signal, TISSUE_FAT)
    canvas.paint(_soft(n_t + front, 1.0), 0.0, TISSUE_AIR)
    # Bladder (bright fluid) in front of the lower sacrum, sometimes.
    if rng.random() < 0.4:
        s3 = geo.segment("S3")
        centre = s3.center - (50.0 + 15.0 * rng.random()) * _normal(s3.angle)
        r_ax = np.array([30.0, 22.0]) * (0.7 + 0.6 * rng.random())
        d = np.hypot((X - centre[0]) / r_ax[0], (Y - centre[1]) / r_ax[1])
        canvas.paint(_soft((d - 1.0) * r_ax.min(), 1.5), 0.92 * params.fluid_signal, TISSUE_SOFT)

    # Back: paraspinal muscle, intramuscular fat, subcutaneous fat, skin, air. The back's
    # surface follows the trunk axis, bulging at the buttocks below the sacrum.
    back = params.back_depth_mm * np.interp(s_t, [-150.0, 0.0, 90.0, 170.0], [0.9, 1.0, 1.06, 1.3])
    back = back + 2.5 * texture(40.0)
    fat_t = params.fat_thickness_mm * (1.0 + 0.15 * texture(30.0))
    striations = texture((6.0, 0.8))  # muscle fibres run along the spine
    muscle = params.muscle_signal * (1.0 + 0.1 * striations + 0.06 * texture(1.5))
    canvas.paint(_soft(half_depth + 2.0 - n, 1.5), muscle, TISSUE_MUSCLE)
    streaks = _soft(1.7 - texture((8.0, 1.2)), 0.3)  # intramuscular fat
    canvas.paint(0.8 * streaks * _soft(half_depth + 20.0 - n, 3.0), params.fat_signal * 0.85)
    fat = params.fat_signal * (1.0 + 0.04 * texture(2.0))
    canvas.paint(_soft(back - fat_t - n_t, 1.5), fat, TISSUE_FAT)
    canvas.paint(_soft(back - 1.5 - n_t, 0.6), params.fat_signal * 1.1)  # skin
    canvas.paint(_soft(back - n_t, 0.6), 0.0, TISSUE_AIR)

    # Aorta: flow void in front of the upper lumbar bodies, ending at L4 (bifurcation).
    if params.show_aorta and abs(lateral_mm) < 14.0:
        gap = 3.0 + 4.0 * rng.random()
        width = (14.0 + 6.0 * rng.random()) * lateral_factor(lateral_mm + 6.0, 14.0)
        along = _soft(s - s_of["L4"], 4.0)
        aorta = _band(n, -half_depth - gap - width, -half_depth - gap, 1.5) * along
        canvas.paint(aorta, 0.12 + 0.15 * rng.random(), TISSUE_VESSEL)

    # Posterior elements: lamina + spinous process per mobile vertebra, a bony plate behind the
    # sacral canal.
    marrow_tex = texture(1.0)
    marrow_coarse = texture(4.0)
    marrow = params.marrow_signal * (1.0 + 0.08 * marrow_tex + 0.05 * marrow_coarse)
    cortex = 0.16
    posterior_cortex = 0.28
    # Interspinous ligaments and fat between the posterior elements (seen in the gaps).
    gaps = _band(n, half_depth + canal_w + 3.0, half_depth + canal_w + 38.0, 4.0)
    canvas.paint(0.7 * gaps, params.fat_signal * (0.6 + 0.15 * texture((4.0, 1.5))))
    canal_mm = params.canal_width_mm * params.scale
    sacral_canal = {"S1": 0.8, "S2": 0.55, "S3": 0.35, "S4": 0.1, "S5": 0.0}
    for seg, s_seg in zip(geo.segments, geo.segment_s, strict=True):
        if seg.name in ("Co1", "Co2"):
            continue
        z = lateral_at(s_seg)
        cw_seg = canal_mm * float(lateral_factor(z, 11.0 * params.scale))
        u, v = seg.local(X, Y)
        if seg.name in sacral_canal:
            # Fused sacrum: a continuous bony plate (median crest) behind the sacral canal.
            v0 = 0.5 * seg.depth + 2.5 + cw_seg * sacral_canal[seg.name]
            plate = np.maximum(np.abs(u) - 0.5 * seg.height - 1.5, np.abs(v - v0 - 4.0) - 4.0)
            canvas.paint(_soft(plate, edge), posterior_cortex, TISSUE_POSTERIOR_BONE)
            canvas.paint(_soft(plate + 1.2, edge), marrow * 0.95)
            continue
        v0 = 0.5 * seg.depth + 2.5 + cw_seg
        # Lamina (an ellipse behind the canal) merging smoothly into a spinous process that
        # slopes down and back: a club-shaped blob of marrow in the midline.
        lamina = _ellipse_sdf(u - 0.15 * seg.height, v - v0 - 5.0, 0.42 * seg.height, 6.0)
        slope = math.radians(20.0 if seg.name.startswith("L") else 38.0)
        length = (28.0 if seg.name.startswith("L") else 32.0) * params.scale
        du, dv = u - 0.15 * seg.height, v - v0 - 5.0
        along = du * math.sin(slope) + dv * math.cos(slope)
        across = du * math.cos(slope) - dv * math.sin(slope)
        size = 0.6 + 0.4 * float(lateral_factor(z, 7.0 * params.scale))
        thickness = 0.27 * seg.height * size
        spinous = _ellipse_sdf(along - 0.55 * length, across, 0.55 * length, thickness)
        bone = _smooth_min(lamina, spinous, 2.5)
        canvas.paint(_soft(bone, edge), posterior_cortex, TISSUE_POSTERIOR_BONE)
        canvas.paint(_soft(bone + 1.0, edge), marrow * 0.95)

    # Spinal canal: dark dura/ligaments around bright CSF; the cord above the conus; cauda
    # equina strands below; fat instead of CSF below S2.
    canal_lo = half_depth + 1.0
    canal_hi = canal_lo + canal_w
    dura = _band(n, canal_lo - 0.8, canal_hi + 1.2, edge) * (canal_w > 0.5)
    canvas.paint(dura, 0.12, TISSUE_CANAL)
    csf_level = params.fluid_signal * _soft(s - s_of["S2"], 3.0) + 0.55 * _soft(s_of["S2"] - s, 3.0)
    csf = _band(n, canal_lo, canal_hi, edge) * (canal_w > 0.5)
    canvas.paint(csf, csf_level * (1.0 + 0.02 * texture(1.0)), TISSUE_CANAL)
    mid = 0.5 * (canal_lo + canal_hi)
    conus = s_of["L1"] + (rng.random() - 0.3) * 25.0 * params.scale
    cord_w = 0.55 * canal_w * np.clip((conus - s) / 25.0, 0.0, 1.0) ** 0.5
    cord = _band(n, mid - 0.5 * cord_w, mid + 0.5 * cord_w, edge) * (cord_w > 0.2)
    canvas.paint(cord, 0.42)
    for offset in rng.uniform(-0.3, 0.3, size=3):
        strand = _band(n, mid + offset * canal_w - 0.4, mid + offset * canal_w + 0.4, 0.3)
        strand *= _soft(conus - s, 5.0) * _soft(s - s_of["S1"], 8.0) * csf
        canvas.paint(0.2 * strand, 0.55)

    # Discs: bright nucleus, dark outer annulus, sometimes an intranuclear cleft; degenerated
    # lower discs are darker.
    for disc in geo.discs:
        upper, lower = disc.upper, disc.lower
        fused = upper.name.startswith(("S", "Co"))
        z = lateral_at(0.5 * (s_of[upper.name] + s_of[lower.name]))
        depth_factor = float(lateral_factor(z, 24.0 * params.scale))
        t_up, t_lo = _axis(upper.angle), _axis(lower.angle)
        below_upper = _along(X, Y, upper.lower_endplate, t_up)
        above_lower = _along(X, Y, lower.upper_endplate, t_lo)
        m = disc.center
        t_m, n_m = _axis(disc.angle), _normal(disc.angle)
        u_d, v_d = _along(X, Y, m, t_m), _along(X, Y, m, n_m)
        half = 0.5 * disc.depth * depth_factor + (0.3 if fused else 1.2)
        sdf = np.maximum.reduce([-below_upper - 2.0, above_lower - 2.0, np.abs(v_d) - half])
        mask = _soft(sdf, edge)
        if fused:
            # Fused remnant: about as dark as cortex, S1-S2 sometimes with a brighter remnant.
            value = 0.26 + (0.3 if upper.name == "S1" else 0.08) * rng.random()
            canvas.paint(mask, value, TISSUE_DISC)
            continue
        hydration = 0.88 + 0.08 * rng.standard_normal()
        if disc.name in ("L5-S1", "L4-L5") and rng.random() < 0.3:
            hydration = 0.35 + 0.15 * rng.random()
        if upper.name == params.collapsed_disc:
            hydration = 0.3  # a collapsed disc is desiccated
        nucleus_w = 0.4 * disc.depth * depth_factor
        profile = np.exp(-((v_d / max(nucleus_w, 1e-3)) ** 4))
        contrast = params.nucleus_contrast
        profile = contrast * profile + (1.0 - contrast) * 0.35
        value = 0.2 + (min(hydration, 1.0) - 0.2) * profile
        if rng.random() < 0.35:  # intranuclear cleft
            value = value - 0.15 * hydration * profile * np.exp(-((u_d / 0.7) ** 2))
        value = value * params.disc_signal
        canvas.paint(mask, value * (1.0 + 0.03 * texture(1.0)), TISSUE_DISC)

    # Vertebral bodies: dark cortical rim around textured marrow, basivertebral vein notch.
    vindex = np.zeros(shape, dtype=np.uint8)
    for k, seg in enumerate(geo.segments):
        z = lateral_at(s_of[seg.name])
        depth_factor = float(lateral_factor(z, 24.0 * params.scale))
        if depth_factor < 0.2:
            continue
        sdf = seg.sdf(X, Y, depth_factor)
        level = 1.0 + 0.04 * rng.standard_normal()  # bodies look alike, not identical
        if seg.name == params.fracture_level:
            level *= 0.7 + 0.6 * params.fluid_signal  # marrow oedema: bright on T2, dark on T1
        sacral = seg.name.startswith(("S", "Co"))
        canvas.paint(_soft(sdf, edge), 0.22 if sacral else cortex, TISSUE_BODY)
        canvas.paint(_soft(sdf + 0.8 * params.scale, edge), marrow * level)
        u, v = seg.local(X, Y)
        if not sacral:
            # Basivertebral vein: a faint bright notch just inside the posterior wall.
            vein = _ellipse_sdf(u, v - 0.5 * seg.depth * depth_factor + 3.0, 2.0, 3.5)
            canvas.paint(0.5 * _soft(vein, edge) * _soft(sdf + 1.0, edge), 0.75)
        vindex[sdf < 0.0] = k + 1
    return canvas.signal, canvas.tissue, vindex


def _acquire(params: PhantomParams, signal: np.ndarray, lateral_mm: float) -> np.ndarray:
    """Scanner effects: point spread, smooth bias field with coil falloff, Rician noise."""
    rng = np.random.default_rng([params.seed, 404, int(round(lateral_mm * 10)) & 0xFFFF])
    shape = signal.shape
    image = ndimage.gaussian_filter(signal, params.blur_px)
    sigma = 0.25 * max(shape)
    bias_rng = np.random.default_rng([params.seed, 505])  # the same bias for every slice
    bias = params.bias_strength * _smooth_noise(bias_rng, shape, sigma)
    ramp = np.linspace(-0.5, 0.5, shape[1])[None, :] * params.coil_gradient
    image = image * np.exp(bias + ramp)
    noise = params.noise_level
    real = image + noise * rng.standard_normal(shape)
    imag = noise * rng.standard_normal(shape)
    magnitude = np.hypot(real, imag) * params.intensity_scale
    return np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)
