"""The phantom generator: determinism, exact and anatomically placed ground truth."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from labeling_pipeline.synthetic.geometry import build_spine
from labeling_pipeline.synthetic.params import PhantomParams, random_params
from labeling_pipeline.synthetic.phantom import generate_cases, make_phantom, make_slices
from labeling_pipeline.synthetic.render import TISSUE_AIR, TISSUE_BODY, TISSUE_DISC
from labeling_pipeline.synthetic.spine_tables import LABELLED_DISCS, VERTEBRAE

# Small images keep the tests fast: 160 x 160 pixels of 1.6 mm = a 256 mm field of view.
SMALL = {"rows": 160, "cols": 160, "pixel_spacing_mm": (1.6, 1.6)}


@pytest.fixture(scope="module")
def cases():
    return generate_cases(6, seed=11, **SMALL)


def _median_3x3(pixels: np.ndarray, x: float, y: float) -> float:
    r, c = int(round(y)), int(round(x))
    return float(np.median(pixels[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]))


def test_same_params_give_identical_images_and_truth():
    params = random_params(np.random.default_rng(5), **SMALL)
    first, second = make_phantom(params), make_phantom(params)
    np.testing.assert_array_equal(first.pixels, second.pixels)
    assert first.landmarks == second.landmarks
    other = make_phantom(replace(params, seed=params.seed + 1))
    assert not np.array_equal(first.pixels, other.pixels)


def test_random_params_are_reproducible_and_in_range():
    draws = [random_params(np.random.default_rng([2, i])) for i in range(40)]
    assert draws[3] == random_params(np.random.default_rng([2, 3]))
    for p in draws:
        assert 192 <= p.rows <= 320 and 160 <= p.cols <= 320
        assert 0.6 <= p.pixel_spacing_mm[0] <= 1.2
    assert random_params(np.random.default_rng(0), tilt_deg=17.0).tilt_deg == 17.0
    with pytest.raises(TypeError, match="unknown"):
        random_params(np.random.default_rng(0), tilt=3)


def test_generate_cases_case_depends_only_on_seed_and_index():
    a = generate_cases(2, seed=4, **SMALL)[1]
    b = generate_cases(3, seed=4, **SMALL)[1]
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_pixels_are_12_bit_with_requested_geometry(cases):
    for ph in cases:
        assert ph.pixels.dtype == np.uint16 and ph.pixels.shape == (160, 160)
        assert int(ph.pixels.max()) <= 4095
        assert ph.pixel_spacing_mm == (1.6, 1.6)


def test_vertebra_truth_is_the_centroid_of_the_rendered_body(cases):
    checked = 0
    for ph in cases:
        for name, (x, y, kind) in ph.landmarks.items():
            if kind != "vertebra":
                continue
            mask = ph.vertebra_index == VERTEBRAE.index(name) + 1
            # The truth pixel lies in that very body...
            assert mask[int(round(y)), int(round(x))], name
            if ph.visibility[name] < 1.0:
                continue
            # ...and equals the centroid of its pixel mask (independent computation).
            rows, cols = np.nonzero(mask)
            assert abs(cols.mean() - x) < 0.35 and abs(rows.mean() - y) < 0.35, name
            checked += 1
    assert checked >= 30


def test_truth_lies_on_the_expected_signal(cases):
    with_air = 0
    for ph in cases:
        # Air away from the skin (2 pixels in), where neither blur nor blending reaches.
        air = ndimage.binary_erosion(ph.tissue == TISSUE_AIR, iterations=2)
        bodies, discs = [], []
        for name, (x, y, kind) in ph.landmarks.items():
            tissue = ph.tissue[int(round(y)), int(round(x))]
            value = _median_3x3(ph.pixels, x, y)
            if kind == "vertebra":
                assert tissue == TISSUE_BODY, name
                bodies.append(value)
            else:
                assert tissue == TISSUE_DISC, name
                discs.append(value)
        # Bodies: intermediate signal, clearly above the air and below bright discs.
        if air.sum() >= 50:
            with_air += 1
            assert min(bodies) > 3 * float(np.median(ph.pixels[air]))
        assert np.mean(discs) > 1.2 * np.mean(bodies)
    assert with_air >= 3


def test_disc_truth_lies_between_its_vertebrae(cases):
    for ph in cases:
        lm = ph.landmarks
        for disc in LABELLED_DISCS:
            upper, lower = disc.split("-")
            if not {disc, upper, lower} <= lm.keys():
                continue
            if ph.visibility[upper] < 1 or ph.visibility[lower] < 1:
                continue
            mid = np.add(lm[upper][:2], lm[lower][:2]) / 2
            gap_mm = math.dist(lm[disc][:2], mid) * ph.pixel_spacing_mm[0]
            # The chain bends at each disc, most at L5-S1 (the sacrum turns back ~30 deg).
            assert gap_mm < (5.0 if disc == "L5-S1" else 3.0), disc


def test_centre_distances_are_anatomical_in_mm(cases):
    for ph in cases:
        lm = ph.landmarks
        if "L1" in lm and "L2" in lm:
            d_mm = math.dist(lm["L1"][:2], lm["L2"][:2]) * ph.pixel_spacing_mm[0]
            assert 25.0 <= d_mm <= 50.0


def test_scale_and_pixel_spacing_are_respected():
    base = PhantomParams(seed=3, **SMALL)

    def l2_l4(params: PhantomParams) -> float:
        lm = make_phantom(params).landmarks
        return math.dist(lm["L2"][:2], lm["L4"][:2])

    ratio = l2_l4(replace(base, scale=1.15)) / l2_l4(replace(base, scale=0.9))
    assert ratio == pytest.approx(1.15 / 0.9, rel=0.03)
    finer = replace(base, rows=200, cols=200, pixel_spacing_mm=(1.28, 1.28))
    assert l2_l4(finer) / l2_l4(base) == pytest.approx(1.6 / 1.28, rel=0.01)


def _step_angles(params: PhantomParams) -> list[float]:
    """Direction (deg) of each caudal-to-cranial step S1 -> L5 -> ... -> T11."""
    geo = build_spine(params)
    order = ["S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11"]
    c = [geo.segment(n).center for n in order]
    return [
        math.degrees(math.atan2(b[0] - a[0], a[1] - b[1])) for a, b in zip(c, c[1:], strict=False)
    ]


def test_curvature_and_tilt_controls():
    base = PhantomParams(seed=2)
    normal, strong = _step_angles(base), _step_angles(replace(base, strong_curvature=True))
    lordosis = lambda a: a[4] - a[1]  # noqa: E731  (L2->L1 vs L5->L4 direction)
    assert lordosis(strong) > 1.3 * lordosis(normal) > 0
    tilted = _step_angles(replace(base, tilt_deg=10.0))
    # Positive tilt turns the downward axis towards +x, i.e. the upward steps towards -x.
    assert np.allclose(np.subtract(tilted, normal), -10.0, atol=0.01)
    # Ordinary cases stay within the lumbar domain knowledge (max 30 deg between steps).
    for i in range(20):
        angles = _step_angles(random_params(np.random.default_rng([8, i])))
        assert max(abs(a - b) for a, b in zip(angles, angles[1:], strict=False)) <= 30.0


@pytest.mark.parametrize(
    ("missing", "absent", "present"),
    [
        (("S1",), {"S1", "L5-S1"}, {"L5", "L4-L5"}),
        (("L5", "S1"), {"L5", "S1", "L4-L5"}, {"L4"}),
        (("L1",), {"T11", "T12", "L1", "T12-L1", "L1-L2"}, {"L2", "L2-L3"}),
    ],
)
def test_missing_landmarks_are_cut_off_by_the_field_of_view(missing, absent, present):
    ph = make_phantom(random_params(np.random.default_rng(9), missing=missing, **SMALL))
    assert not absent & ph.landmarks.keys()
    assert present <= ph.landmarks.keys()


def test_invalid_missing_is_rejected():
    with pytest.raises(ValueError, match="missing"):
        PhantomParams(missing=("L3",))
    with pytest.raises(ValueError, match="unknown"):
        PhantomParams(missing=("C7",))


def test_series_slices_vary_around_the_truth_slice():
    params = random_params(np.random.default_rng(1), lateral_drift_mm=2.0, **SMALL)
    stack = make_slices(params, count=3, spacing_mm=4.0)
    np.testing.assert_array_equal(stack[1].pixels, make_phantom(params).pixels)
    for neighbour in (stack[0], stack[2]):
        assert not np.array_equal(neighbour.pixels, stack[1].pixels)
        corr = np.corrcoef(neighbour.pixels.ravel(), stack[1].pixels.ravel())[0, 1]
        assert corr > 0.8  # the same anatomy, slightly off plane
