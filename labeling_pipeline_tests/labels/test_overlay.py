"""Review overlays: PNG written atomically, size, colours, windowing."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from labeling_pipeline.labels.dataset import label_rows
from labeling_pipeline.labels.overlay import (
    OK_COLOUR,
    REVIEW_COLOUR,
    overlay_scale,
    render_overlay,
    window_to_uint8,
)
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult

from .helpers import make_image, make_results, make_template


def test_overlay_png_size_and_marks(tmp_path: Path) -> None:
    image = make_image(shape=(120, 100))
    results = [
        LandmarkResult("L4", "vertebra", 30.0, 40.0, 0.9, OK),
        LandmarkResult("L5", "vertebra", 70.0, 90.0, 0.2, NEEDS_REVIEW, "far"),
        LandmarkResult("S1", "vertebra", math.nan, math.nan, math.nan, NEEDS_REVIEW),
    ]
    path = render_overlay(image, results, tmp_path / "overlays" / "1.2.3.png")
    assert path == tmp_path / "overlays" / "1.2.3.png"
    scale = overlay_scale(120, 100)
    assert scale == 5  # ceil(512 / 120)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        assert png.size == (100 * scale, 120 * scale)  # (width, height)
        pixels = np.asarray(png)
    # The mark's centre has the status colour: pixel (x, y) is centred at (x + 0.5) * scale.
    assert tuple(pixels[int(40.5 * scale), int(30.5 * scale)]) == OK_COLOUR
    assert tuple(pixels[int(90.5 * scale), int(70.5 * scale)]) == REVIEW_COLOUR
    assert [p.name for p in path.parent.iterdir()] == ["1.2.3.png"]


def test_overlay_from_label_rows_is_deterministic(tmp_path: Path) -> None:
    image = make_image()
    frame = label_rows(image, "k", make_results(review=("L3",)), {}, make_template())
    first = render_overlay(image, frame, tmp_path / "a.png", scale=2).read_bytes()
    second = render_overlay(image, frame, tmp_path / "a.png", scale=2).read_bytes()
    assert first == second
    with Image.open(tmp_path / "a.png") as png:
        assert png.size == (image.columns * 2, image.rows * 2)


def test_window_percentiles_and_monochrome1() -> None:
    image = make_image(shape=(64, 64))
    image.pixels[0, 0] = 1e6  # one outlier does not wash out the window
    grey = window_to_uint8(image)
    assert grey.dtype == np.uint8 and grey.min() == 0 and grey.max() == 255
    assert 100 < grey[32, 32] < 155  # mid-range pixel stays mid-grey
    image.photometric_interpretation = "MONOCHROME1"
    np.testing.assert_array_equal(window_to_uint8(image), 255 - grey)
    image.photometric_interpretation = "MONOCHROME2"
    image.pixels[:] = 7.0  # a constant image is shown black, without dividing by zero
    assert not window_to_uint8(image).any()


def test_caption_names_partition_status_and_reason_and_index_lists_flagged_first(
    tmp_path: Path,
) -> None:
    from labeling_pipeline.labels.overlay import write_overlay_index

    flagged_image, ok_image = make_image(sop="1.2.3.4.1"), make_image(sop="1.2.3.4.2")
    flagged = label_rows(
        flagged_image,
        "incoming-20240315-aaaaaaaa",
        make_results(review=("L3",)),
        {},
        make_template(),
    )
    fine = label_rows(ok_image, "incoming-20240316-bbbbbbbb", make_results(), {}, make_template())
    plain = render_overlay(flagged_image, flagged, tmp_path / "plain.png", scale=2)
    path = render_overlay(
        flagged_image,
        flagged,
        tmp_path / "1.2.3.4.1.png",
        scale=2,
        partition_key="incoming-20240315-aaaaaaaa",
    )
    render_overlay(ok_image, fine, tmp_path / "1.2.3.4.2.png", scale=2, partition_key="k")
    with Image.open(path) as png, Image.open(plain) as without:
        assert png.width == without.width and png.height > without.height  # the caption strip
        strip = np.asarray(png)[without.height :]
    assert (strip == REVIEW_COLOUR).all(axis=-1).any()  # L3's line in the review colour
    index = write_overlay_index(tmp_path, pd.concat([fine, flagged]))
    page = index.read_text()
    assert page.index("1.2.3.4.1.png") < page.index("1.2.3.4.2.png")  # flagged first
    assert "L3 (needs_review)" in page and "incoming-20240315-aaaaaaaa" in page
