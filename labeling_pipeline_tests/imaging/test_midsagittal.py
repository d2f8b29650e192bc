"""Choosing the most mid-sagittal slice of a sagittal stack: on synthetic stacks whose true
mid-plane is not the middle index (T2 look and the same stack intensity-inverted), and the
fallbacks to the middle slice. The real series are checked in ``dicom/test_scanning.py``."""

from __future__ import annotations

import numpy as np
import pytest

from labeling_pipeline.imaging.midsagittal import (
    SINGLE_FRAME,
    central_slices,
    choose_among,
    choose_mid_sagittal,
)
from labeling_pipeline.synthetic import PhantomParams, make_phantom

SPACING_MM = 4.0
SLICES = 7


def _stack(seed: int, shift_mm: float) -> tuple[list[np.ndarray], list[float], PhantomParams]:
    """Seven parallel slices 4 mm apart whose middle one lies ``shift_mm`` off the mid-plane."""
    params = PhantomParams(
        seed=seed, rows=192, cols=192, pixel_spacing_mm=(1.25, 1.25), lateral_drift_mm=1.5
    )
    offsets = [-(k - SLICES // 2) * SPACING_MM + shift_mm for k in range(SLICES)]
    return [make_phantom(params, o).pixels for o in offsets], offsets, params


def test_central_slices_cover_8_mm_or_the_middle_third() -> None:
    assert central_slices(1, 4.0) == [0]
    assert central_slices(5, 4.0) == [0, 1, 2, 3, 4]  # +-8 mm
    assert central_slices(15, 4.0) == [5, 6, 7, 8, 9]  # +-2 slices: "5 central slices"
    assert central_slices(9, 1.0) == list(range(9))  # all within 8 mm
    assert central_slices(40, 1.0) == list(range(12, 29))  # +-8 mm, more than a third
    assert central_slices(21, 1.5) == list(range(5, 16))  # +-5 slices = 7.5 mm
    assert central_slices(30, 1.0) == list(range(7, 24))
    assert central_slices(9, None) == [3, 4, 5]  # no geometry: the middle third
    assert central_slices(15, None) == [5, 6, 7, 8, 9]
    assert central_slices(4, None) == [2]
    with pytest.raises(ValueError):
        central_slices(0, 1.0)


@pytest.mark.parametrize(("seed", "shift_mm"), [(1, 8.0), (4, -8.0)])
def test_shifted_mid_plane_is_found_in_any_contrast(seed: int, shift_mm: float) -> None:
    stack, offsets, params = _stack(seed, shift_mm)
    inverted = [4095.0 - s.astype(np.float64) for s in stack]  # CSF dark, fat dark, air bright
    middle_offset = abs(offsets[SLICES // 2])
    for pixels in (stack, inverted):
        choice = choose_mid_sagittal(pixels, params.pixel_spacing_mm, SPACING_MM)
        chosen = abs(offsets[choice.index])
        # Within one slice of the true mid-plane, and nearer to it than the middle slice.
        assert chosen <= SPACING_MM and chosen < middle_offset, (offsets, choice)
        assert choice.reason.startswith("most mid-sagittal of 5 central slices"), choice
        assert choice.candidates == (1, 2, 3, 4, 5) and len(choice.scores) == 5


def test_centred_stack_keeps_its_middle_slice() -> None:
    stack, offsets, params = _stack(3, 0.0)
    choice = choose_mid_sagittal(stack, params.pixel_spacing_mm, SPACING_MM)
    assert choice.index == SLICES // 2 and offsets[choice.index] == 0.0
    assert "middle" in choice.reason, choice


def test_nothing_to_tell_apart_gives_the_middle_slice() -> None:
    flat = [np.full((64, 64), 100.0 + k) for k in range(5)]  # uniform slices: no structure
    choice = choose_mid_sagittal(flat, (1.0, 1.0), 4.0)
    assert choice.index == 2 and choice.reason == "middle slice: no difference"
    same = [
        make_phantom(PhantomParams(seed=5, rows=96, cols=96, pixel_spacing_mm=(2.5, 2.5))).pixels
    ] * 5
    choice = choose_mid_sagittal(same, (2.5, 2.5), 4.0)
    assert choice.index == 2 and choice.reason == "middle slice: no difference"
    assert choose_mid_sagittal([flat[0]], (1.0, 1.0), None).reason == SINGLE_FRAME


def test_choose_among_checks_its_input() -> None:
    a, b = np.zeros((40, 40)), np.zeros((40, 50))
    assert "differ in size" in choose_among([0, 1], [a, b], 1, (1.0, 1.0)).reason
    assert choose_among([3], [a], 3, (1.0, 1.0)).index == 3
    with pytest.raises(ValueError):
        choose_among([0, 1], [a], 1, (1.0, 1.0))
    with pytest.raises(ValueError):
        choose_among([0, 1], [a, a], 2, (1.0, 1.0))
    with pytest.raises(ValueError):
        choose_mid_sagittal([], (1.0, 1.0))
