"""Rendering: tissue layout along the spine's curvilinear frame, T2-like signal (and the
other contrasts), and the scanner's point spread, bias field and noise."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from labeling_pipeline.synthetic.geometry import SpineGeometry, axis_vector, normal_vector
from labeling_pipeline.synthetic.params import PhantomParams

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


def render(
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
        centre = s3.center - (50.0 + 15.0 * rng.random()) * normal_vector(s3.angle)
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
        t_up, t_lo = axis_vector(upper.angle), axis_vector(lower.angle)
        below_upper = _along(X, Y, upper.lower_endplate, t_up)
        above_lower = _along(X, Y, lower.upper_endplate, t_lo)
        m = disc.center
        t_m, n_m = axis_vector(disc.angle), normal_vector(disc.angle)
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


def acquire(params: PhantomParams, signal: np.ndarray, lateral_mm: float) -> np.ndarray:
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
