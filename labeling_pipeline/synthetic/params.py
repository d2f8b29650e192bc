"""A phantom's parameters, and random draws of them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from labeling_pipeline.synthetic.spine_tables import (
    LABELLED_VERTEBRAE,
    labelled_vertebrae,
    segment_names,
)


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
        check_missing(self.missing)

    @property
    def labelled_vertebrae(self) -> tuple[str, ...]:
        """The vertebrae its ground truth reports (with "L6" for six lumbar vertebrae)."""
        return labelled_vertebrae(self.lumbar_count)


def check_missing(missing: tuple[str, ...]) -> None:
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
