"""Hard families of generated cases: each draws what it claims, and the default look is kept."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labeling_pipeline.synthetic.families import FAMILIES, family_overrides
from labeling_pipeline.synthetic.geometry import build_spine
from labeling_pipeline.synthetic.params import PhantomParams, random_params
from labeling_pipeline.synthetic.phantom import make_phantom
from labeling_pipeline.synthetic.render import TISSUE_BODY, TISSUE_CANAL, TISSUE_DISC

SMALL = {"rows": 160, "cols": 160, "pixel_spacing_mm": (1.6, 1.6)}


def _family_params(family: str, index: int = 0, **small) -> PhantomParams:
    rng = np.random.default_rng([5, index])
    return random_params(rng, **{**family_overrides(family, rng), **small})


def _mean_signal(phantom, tissue: int) -> float:
    return float(np.mean(phantom.pixels[phantom.tissue == tissue]))


def test_every_family_draws_valid_reproducible_params():
    for family in FAMILIES:
        params = _family_params(family)
        assert params == _family_params(family), family
    with pytest.raises(ValueError, match="unknown family"):
        family_overrides("t3", np.random.default_rng(0))


@pytest.mark.parametrize(
    ("family", "darker", "brighter"),
    [
        ("t1", TISSUE_CANAL, TISSUE_BODY),  # dark fluid, bright marrow
        ("t1", TISSUE_DISC, TISSUE_BODY),  # dark discs
        ("stir", TISSUE_BODY, TISSUE_DISC),  # fatty marrow suppressed
        ("fat", TISSUE_DISC, TISSUE_BODY),
    ],
)
def test_contrast_families_swap_which_tissue_is_bright(family, darker, brighter):
    phantom = make_phantom(_family_params(family, **SMALL))
    assert _mean_signal(phantom, darker) < 0.8 * _mean_signal(phantom, brighter)


def test_t2_look_is_the_default():
    phantom = make_phantom(random_params(np.random.default_rng(3), **SMALL))
    assert _mean_signal(phantom, TISSUE_CANAL) > _mean_signal(phantom, TISSUE_BODY)
    assert _mean_signal(phantom, TISSUE_DISC) > _mean_signal(phantom, TISSUE_BODY)


def test_long_field_of_view_shows_the_thoracolumbar_spine_at_half_millimetre_pixels():
    params = _family_params("long-fov")
    assert 512 <= params.rows <= 640 and params.pixel_spacing_mm[0] <= 0.55
    phantom = make_phantom(params)
    assert {"T11", "T12", "L1", "L5", "S1"} <= set(phantom.landmarks)


def test_short_field_of_view_shows_l2_to_the_sacrum():
    landmarks = make_phantom(_family_params("short-fov")).landmarks
    assert "L1" not in landmarks and {"L2", "L5", "S1"} <= set(landmarks)


def test_slip_moves_the_slipped_vertebra_forward_over_the_one_below():
    base = PhantomParams(**SMALL)
    slipped = PhantomParams(**SMALL, slip_level="L5", slip_mm=15.0)
    before, after = build_spine(base), build_spine(slipped)

    def offset(geometry, upper, lower):  # antero-posterior offset of upper over lower
        a, b = geometry.segment(upper), geometry.segment(lower)
        normal = np.array([math.cos(b.angle), -math.sin(b.angle)])  # posterior of lower
        return float((a.center - b.center) @ normal)

    # L5 moves anteriorly (negative) relative to S1 by about the slip; L4 goes with it.
    assert offset(after, "L5", "S1") - offset(before, "L5", "S1") == pytest.approx(-15.0, abs=1.0)
    assert offset(after, "L4", "L5") == pytest.approx(offset(before, "L4", "L5"), abs=0.5)


def test_wedge_fracture_loses_anterior_height_and_collapse_narrows_the_disc():
    base = build_spine(PhantomParams(**SMALL))
    broken = build_spine(PhantomParams(**SMALL, fracture_level="L2", fracture_fraction=0.4))
    l2, l2_broken = base.segment("L2"), broken.segment("L2")
    anterior = l2_broken.height - 0.5 * l2_broken.wedge
    posterior = l2_broken.height + 0.5 * l2_broken.wedge
    assert anterior == pytest.approx(0.6 * l2.height, rel=0.05)
    assert posterior == pytest.approx(l2.height, rel=0.05)

    collapsed = build_spine(PhantomParams(**SMALL, collapsed_disc="L4"))

    def gap(geometry):
        return float(
            np.linalg.norm(
                geometry.segment("L5").upper_endplate - geometry.segment("L4").lower_endplate
            )
        )

    assert gap(collapsed) < 0.65 * gap(base)  # the posterior side keeps >= 2 mm at a wedge


def test_six_lumbar_vertebrae_are_counted_from_the_top():
    phantom = make_phantom(PhantomParams(lumbar_count=6))
    names = [n for n, (_, _, kind) in phantom.landmarks.items() if kind == "vertebra"]
    assert names[-3:] == ["L5", "L6", "S1"]
    assert "L5-L6" in phantom.landmarks and "L6-S1" in phantom.landmarks
    with pytest.raises(ValueError, match="lumbar_count"):
        PhantomParams(lumbar_count=4)
    with pytest.raises(ValueError, match="fracture_level"):
        PhantomParams(fracture_level="S2", fracture_fraction=0.3)


def test_out_of_plane_bow_narrows_the_bodies_mid_lumbar():
    straight = make_phantom(PhantomParams(**SMALL))
    bowed = make_phantom(PhantomParams(**SMALL, lateral_bow_mm=14.0))
    # Bodies are cut off-centre where the spine bows out of the slice: less body in the image.
    assert (bowed.tissue == TISSUE_BODY).sum() < 0.95 * (straight.tissue == TISSUE_BODY).sum()
