"""Labels placed beyond the image's edge are never ok."""

import numpy as np

from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.imaging.study import StudyImages
from labeling_pipeline.localization import study as study_module
from labeling_pipeline.localization.result import (
    NEEDS_REVIEW,
    OK,
    OUTSIDE_IMAGE_REASON,
    LandmarkResult,
    flag_outside_image,
)
from labeling_pipeline.localization.search import SearchSettings


def _at(name: str, x: float, y: float, status: str = OK) -> LandmarkResult:
    return LandmarkResult(name, "vertebra", x, y, 0.6, status, confidence=0.97)


def test_only_ok_labels_beyond_the_edge_are_flagged():
    results = [
        _at("L4", 100.0, 120.0),
        _at("L5", 110.0, 223.4),  # within half a pixel of the last row's centre
        _at("S1", 115.0, 225.0),  # beyond the last row of a 224-row image
        _at("T12", -0.6, 20.0),  # left of the first column
        _at("T11", float("nan"), float("nan"), NEEDS_REVIEW),
    ]
    flagged = flag_outside_image(results, rows=224, columns=224)
    assert [r.status for r in flagged] == [OK, OK, NEEDS_REVIEW, NEEDS_REVIEW, NEEDS_REVIEW]
    assert flagged[2].reason == OUTSIDE_IMAGE_REASON and flagged[2].confidence == 0.0
    assert (flagged[2].x, flagged[2].y) == (115.0, 225.0)  # the position stays for the reviewer
    assert flagged[4] is results[4]


def test_localize_study_flags_what_the_search_placed_beyond_the_image(monkeypatch):
    image = LabelImage("1.2.3", "1.2.3.4", "1.2.3.4.5", "", "MR", np.zeros((224, 200)), (1.0, 1.0))
    found = [_at("L5", 150.0, 200.0), _at("S1", 160.0, 224.7)]
    monkeypatch.setattr(
        study_module,
        "localize_image",
        lambda *args, **kwargs: study_module.ImageLocalization(found, ["default", "default"]),
    )

    class Store:
        def read(self, partition_key: str, image_key: str) -> None:
            return None

    study = StudyImages("archive-20260101-0000abcd", "", "efficientnet-lite0", [image])
    localization = study_module.localize_study(
        Store(), study, template=None, settings=SearchSettings(), alternatives=[]
    )
    [results] = localization.results
    assert [r.status for r in results] == [OK, NEEDS_REVIEW]
