"""Which slice of a sagittal stack is the most mid-sagittal: where the spinal canal and the
column of vertebral bodies show best.

On the mid-sagittal plane the slice cuts the canal along its full width: a long, continuous
band (bright fluid on T2, STIR and water images, dark on T1 and fat images) running the length
of the lumbar spine behind the bodies. Off the midline the band narrows, fades by partial
volume and is interrupted by the pedicles. A slice's score is the amount of such band it shows,
whatever its sign (so any contrast works): the second derivative across a band, averaged along
it over several centimetres so that short structures (facets, bowel loops, the pedicles' gaps)
average away, taken at the best of a few scales and normalised by sigma cubed so that a band of
width w and contrast c answers about c * w. The score is the mean of the strongest answers
inside the body, at least 30 mm from its surface (the subcutaneous fat is a long band too).

Only the slices of one series are compared with one another, so the score needs no calibration
across series. It can be fooled by another long band that comes and goes between slices (a
flow void of the aorta beside the spine), so a slice other than the middle one is chosen only
when it scores clearly better (:data:`MIN_GAIN`). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Working resolution (mm per pixel) of the score: enough for a canal 10-18 mm wide.
WORK_MM = 2.0
#: Gaussian sigmas (mm) of the second derivative across a band: canals about 8-25 mm wide.
BAND_SIGMAS_MM = (3.0, 4.5, 6.5)
#: Gaussian sigma (mm) of the averaging along a band: long structures only.
ALONG_SIGMA_MM = 20.0
#: Sampling step (mm) of that averaging.
ALONG_STEP_MM = 3.0
#: Band directions (degrees from the image's vertical) that are tried: lordosis and tilt.
BAND_ANGLES_DEG = tuple(range(-40, 41, 10))
#: Distance (mm) from the body's surface (and from the image border) that the score ignores.
SURFACE_MARGIN_MM = 30.0
#: Share of the interior's pixels whose responses make the score (about the canal's share).
TOP_SHARE = 0.02
#: A slice other than the middle one must beat the middle one's score by this share.
MIN_GAIN = 0.08
#: Candidates: the slices within this distance (mm) of the middle one ...
CENTRAL_MM = 8.0
#: ... or, where that is more, the middle third of the stack.
CENTRAL_SHARE = 1 / 3
#: The reason given when there is nothing to choose from.
SINGLE_FRAME = "single frame"


@dataclass(frozen=True)
class SliceChoice:
    """The chosen slice (an index into the stack given) and why, in words for the catalog.
    ``candidates`` are the indices compared, ``scores`` their scores (empty when none were
    computed)."""

    index: int
    reason: str
    candidates: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()


def central_slices(count: int, slice_spacing_mm: float | None) -> list[int]:
    """Indices of the central slices of a stack of ``count``: those within
    :data:`CENTRAL_MM` of the middle one (index ``count // 2``), or the middle third where
    that is more. Without a known spacing, the middle third."""
    if count < 1:
        raise ValueError(f"a stack needs at least one slice, got {count}")
    middle = count // 2
    reach = max(int((count * CENTRAL_SHARE - 1) / 2 + 0.5), 0)  # the middle third's half
    if slice_spacing_mm is not None and math.isfinite(slice_spacing_mm) and slice_spacing_mm > 0:
        reach = max(reach, int(CENTRAL_MM / slice_spacing_mm + 1e-6))
    return list(range(max(middle - reach, 0), min(middle + reach, count - 1) + 1))


def choose_mid_sagittal(
    stack: Sequence[np.ndarray],
    pixel_spacing_mm: tuple[float, float],
    slice_spacing_mm: float | None = None,
) -> SliceChoice:
    """The most mid-sagittal slice of ``stack`` (slices ordered along the slice normal),
    chosen among :func:`central_slices`; the middle slice when nothing tells them apart."""
    if len(stack) == 0:
        raise ValueError("an empty stack has no slice to choose")
    if len(stack) == 1:
        return SliceChoice(0, SINGLE_FRAME, (0,))
    candidates = central_slices(len(stack), slice_spacing_mm)
    return choose_among(
        candidates, [stack[i] for i in candidates], len(stack) // 2, pixel_spacing_mm
    )


def choose_among(
    candidates: Sequence[int],
    slices: Sequence[np.ndarray],
    middle: int,
    pixel_spacing_mm: tuple[float, float],
) -> SliceChoice:
    """The most mid-sagittal of the ``candidates`` (indices along the slice normal, ``slices``
    their pixels) or ``middle`` (one of them) when nothing tells them apart."""
    candidates = list(candidates)
    if len(candidates) != len(slices) or middle not in candidates:
        raise ValueError("need one slice per candidate, and the middle one among them")
    if len(candidates) == 1:
        return SliceChoice(middle, "middle slice: the only central slice", (middle,))
    if len({np.shape(s) for s in slices}) != 1:
        return SliceChoice(middle, "middle slice: central slices differ in size", tuple(candidates))
    return _decide(candidates, mid_sagittal_scores(slices, pixel_spacing_mm), middle)


def _decide(candidates: list[int], scores: np.ndarray, middle: int) -> SliceChoice:
    kept = tuple(candidates)
    values = tuple(round(float(s), 6) for s in scores)
    top = float(np.max(scores))
    if not np.all(np.isfinite(scores)) or top <= 1e-9 or float(np.ptp(scores)) <= 1e-9 * top:
        return SliceChoice(middle, "middle slice: no difference", kept, values)
    best = candidates[int(np.argmax(scores))]
    relative = {i: float(s) / top for i, s in zip(candidates, scores, strict=True)}
    where = f"of {len(candidates)} central slices"
    if best == middle:
        return SliceChoice(middle, f"most mid-sagittal {where} is the middle one", kept, values)
    if relative[best] < (1.0 + MIN_GAIN) * relative[middle]:
        return SliceChoice(
            middle,
            f"middle slice: no clear difference {where} "
            f"(the best, {best - middle:+d} from the middle along the normal, scores "
            f"{relative[best] / relative[middle] - 1:+.1%})",
            kept,
            values,
        )
    return SliceChoice(
        best,
        f"most mid-sagittal {where}: {best - middle:+d} from the middle along the normal "
        f"(score 1.00; the middle slice {relative[middle]:.2f})",
        kept,
        values,
    )


def mid_sagittal_scores(
    slices: Sequence[np.ndarray], pixel_spacing_mm: tuple[float, float]
) -> np.ndarray:
    """One score per slice (slices of one series, one shape): the strength of long,
    near-vertical bands at canal scale inside the body; higher is more mid-sagittal. Only
    comparable among slices scored together."""
    work = [_resample(np.asarray(s, dtype=np.float64), pixel_spacing_mm) for s in slices]
    pixel_mm = _work_spacing(pixel_spacing_mm)
    scale = float(np.median([np.percentile(w, 99) for w in work]))
    if not math.isfinite(scale) or scale <= 0:
        return np.zeros(len(work))
    work = [w / scale for w in work]
    mask = _interior(np.mean(work, axis=0), pixel_mm)
    if mask.sum() < 50:  # too small a body to judge: every slice alike
        return np.zeros(len(work))
    keep = max(int(TOP_SHARE * mask.sum()), 10)
    scores = []
    for image in work:
        response = _band_response(image, pixel_mm)[mask]
        scores.append(float(np.mean(np.partition(response, -keep)[-keep:])))
    return np.asarray(scores)


def _factors(pixel_spacing_mm: tuple[float, float]) -> tuple[int, int]:
    return tuple(max(1, round(WORK_MM / float(s))) for s in pixel_spacing_mm)  # type: ignore[return-value]


def _work_spacing(pixel_spacing_mm: tuple[float, float]) -> tuple[float, float]:
    fr, fc = _factors(pixel_spacing_mm)
    return float(pixel_spacing_mm[0]) * fr, float(pixel_spacing_mm[1]) * fc


def _resample(image: np.ndarray, pixel_spacing_mm: tuple[float, float]) -> np.ndarray:
    """Block means to about :data:`WORK_MM` per pixel (also lowers the noise)."""
    fr, fc = _factors(pixel_spacing_mm)
    rows, cols = (image.shape[0] // fr) * fr, (image.shape[1] // fc) * fc
    image = image[:rows, :cols]
    return image.reshape(rows // fr, fr, cols // fc, fc).mean(axis=(1, 3))


def _gaussian_kernels(sigma_px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sampled Gaussian and its first and second derivatives."""
    radius = max(int(math.ceil(3.5 * sigma_px)), 1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma_px) ** 2)
    g /= g.sum()
    return g, -x / sigma_px**2 * g, (x**2 / sigma_px**4 - 1 / sigma_px**2) * g


def _convolve(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``image`` with ``kernel`` along ``axis``, edges extended."""
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(image, pad, mode="edge")
    size = image.shape[axis]
    out = np.zeros_like(image)
    for k, weight in enumerate(kernel):
        out += weight * np.take(padded, np.arange(k, k + size), axis=axis)
    return out


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved by (dy, dx) pixels, edges extended: out[i, j] = image[i + dy, j + dx]."""
    rows, cols = image.shape
    ii = np.clip(np.arange(rows) + dy, 0, rows - 1)
    jj = np.clip(np.arange(cols) + dx, 0, cols - 1)
    return image[np.ix_(ii, jj)]


def _band_response(image: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """Per pixel: the strongest |second derivative across a band| averaged along the band,
    over the directions :data:`BAND_ANGLES_DEG` and the scales :data:`BAND_SIGMAS_MM`.

    Scale-normalised by sigma cubed: for a band of width w and contrast c the strongest answer
    is then about c * w, the amount of canal the slice cuts (narrower off the midline, and
    fainter by partial volume).
    """
    best = np.zeros_like(image)
    for sigma_mm in BAND_SIGMAS_MM:
        response = _band_response_at(image, pixel_mm, sigma_mm)
        np.maximum(best, response * sigma_mm**3, out=best)
    return best


def _band_response_at(
    image: np.ndarray, pixel_mm: tuple[float, float], sigma_mm: float
) -> np.ndarray:
    row_mm, col_mm = pixel_mm
    gr, dr, ddr = _gaussian_kernels(sigma_mm / row_mm)
    gc, dc, ddc = _gaussian_kernels(sigma_mm / col_mm)
    # Derivatives per mm (rows = y, columns = x).
    ixx = _convolve(_convolve(image, gr, 0), ddc, 1) / col_mm**2
    iyy = _convolve(_convolve(image, ddr, 0), gc, 1) / row_mm**2
    ixy = _convolve(_convolve(image, dr, 0), dc, 1) / (row_mm * col_mm)
    step_mm = max(min(row_mm, col_mm), ALONG_STEP_MM)
    reach = math.ceil(2.5 * ALONG_SIGMA_MM / step_mm)
    taps = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (taps * step_mm / ALONG_SIGMA_MM) ** 2)
    weights /= weights.sum()
    best = np.zeros_like(image)
    for angle in np.radians(BAND_ANGLES_DEG):
        along_y, along_x = math.cos(angle), math.sin(angle)  # direction of the band
        across_y, across_x = -along_x, along_y
        across = ixx * across_x**2 + 2 * ixy * across_x * across_y + iyy * across_y**2
        averaged = np.zeros_like(image)
        for t, weight in zip(taps, weights, strict=True):
            dy = round(t * step_mm * along_y / row_mm)
            dx = round(t * step_mm * along_x / col_mm)
            averaged += weight * _shifted(across, dy, dx)
        np.maximum(best, np.abs(averaged), out=best)
    return best


def _interior(image: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """Pixels at least :data:`SURFACE_MARGIN_MM` inside the body's surface (where a row meets
    the background, seen from the left or right edge) and 10 mm from the image border.

    The background is the flatter of the two outermost column strips (air: only noise, dark
    or, in an inverted image, bright); a pixel belongs to the body where the smoothed image
    differs from it by more than 12 % of the image's range.
    """
    row_mm, col_mm = pixel_mm
    smooth = _convolve(
        _convolve(image, _gaussian_kernels(3.0 / row_mm)[0], 0),
        _gaussian_kernels(3.0 / col_mm)[0],
        1,
    )
    strip = max(int(round(5.0 / col_mm)), 1)
    edges = [image[:, :strip], image[:, -strip:]]
    background = float(np.median(min(edges, key=lambda e: float(np.std(e)))))
    low, high = np.percentile(smooth, [1, 99])
    body = np.abs(smooth - background) > 0.12 * max(float(high - low), 1e-12)
    rows, cols = body.shape
    any_body = body.any(axis=1)
    first = np.where(any_body, body.argmax(axis=1), cols)
    last = np.where(any_body, cols - 1 - body[:, ::-1].argmax(axis=1), -1)
    margin = SURFACE_MARGIN_MM / col_mm
    # The surface margin applies only where the row meets the background before the border.
    start = np.where(first > 0, first + margin, 0)
    stop = np.where(last < cols - 1, last - margin, cols - 1)
    index = np.arange(cols)[None, :]
    inside = (index >= start[:, None]) & (index <= stop[:, None]) & any_body[:, None]
    border_r = int(math.ceil(10.0 / row_mm))
    border_c = int(math.ceil(10.0 / col_mm))
    inside[:border_r] = False
    inside[rows - border_r :] = False
    inside[:, :border_c] = False
    inside[:, cols - border_c :] = False
    return inside
