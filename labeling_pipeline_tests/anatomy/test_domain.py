"""Domain knowledge: the packaged regions, the data directory's copies, and bad documents."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml

from labeling_pipeline.anatomy import (
    DomainError,
    PairRange,
    SearchGrowth,
    domain_source,
    load_domain,
)
from labeling_pipeline.anatomy.domain import PACKAGED_DIR, parse_domain

REPO = Path(__file__).resolve().parents[2]
DATA_DOMAIN_DIR = REPO / "data" / "domain"
REGIONS = ("lumbar", "cervical")


def packaged_document(region: str = "lumbar") -> dict:
    return yaml.safe_load((PACKAGED_DIR / f"{region}.yaml").read_text())


# --- the shipped files -------------------------------------------------------------------------


def test_lumbar_is_packaged_caudal_to_cranial_with_a_range_for_every_step():
    lumbar = load_domain("lumbar")
    assert lumbar.region == "lumbar"
    assert lumbar.order == ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11")
    assert lumbar.first_landmark == "L5"
    for caudal, cranial in zip(lumbar.order, lumbar.order[1:], strict=False):
        pair = lumbar.pairs[(caudal, cranial)]
        assert 0 < pair.min_mm < pair.max_mm
        assert pair.min_deg < 0 < pair.max_deg
        # Lumbar centre-to-centre distances are 32-45 mm in adults: the range must hold them.
        assert pair.accepts(35.0, 0.0)
    assert len(lumbar.pairs) == len(lumbar.order) - 1
    assert lumbar.discs["L5-S1"] == ("L5", "S1")
    assert all(
        upper in lumbar.order and lower in lumbar.order for upper, lower in lumbar.discs.values()
    )
    (x0, x1), (y0, y1) = lumbar.default_search_region
    assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
    assert y0 >= 0.3, "L5 is searched in the lower part of a lumbar image"
    assert lumbar.search_growth.radii()[0] == lumbar.search_growth.start_mm
    assert 0 < lumbar.max_turn_deg < 90


def test_cervical_is_packaged_with_c2_first():
    cervical = load_domain("cervical")
    assert cervical.region == "cervical"
    assert cervical.order[0] == "T1" and cervical.order[-1] == "C1"
    assert cervical.first_landmark == "C2"
    assert len(cervical.pairs) == len(cervical.order) - 1
    # Cervical steps are about half the lumbar ones.
    assert cervical.pair("C5", "C4").max_mm < load_domain("lumbar").pair("L3", "L4").min_mm + 5


@pytest.mark.parametrize("region", REGIONS)
def test_data_directory_copies_parse_and_equal_the_packaged_defaults(region):
    copy_path = DATA_DOMAIN_DIR / f"{region}.yaml"
    assert copy_path.is_file(), f"{copy_path} is shipped for users to edit"
    from_data = parse_domain(yaml.safe_load(copy_path.read_text()), str(copy_path))
    assert from_data == load_domain(region)
    assert load_domain(region, DATA_DOMAIN_DIR) == load_domain(region)


def test_a_domain_directory_copy_overrides_the_packaged_file(tmp_path):
    document = packaged_document()
    document["max_turn_deg"] = 12.5
    (tmp_path / "lumbar.yaml").write_text(yaml.safe_dump(document))
    assert load_domain("lumbar", tmp_path).max_turn_deg == 12.5
    # A region without a copy there is an error, not a silent packaged default...
    with pytest.raises(DomainError, match="no domain knowledge for region 'cervical'"):
        load_domain("cervical", tmp_path)
    # ...which only a data directory without a domain/ folder gets, and says so.
    assert load_domain("cervical", tmp_path / "absent") == load_domain("cervical")
    assert domain_source("cervical", tmp_path / "absent") == "packaged"
    assert domain_source("lumbar", tmp_path) == "data"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["pairs"]["L5-L4"].update({"distance_mm": [float("nan"), 40]}), "finite"),
        (lambda d: d["pairs"]["L5-L4"].update({"distance_mm": [0, 0]}), "is empty"),
        (lambda d: d["pairs"]["L5-L4"].update({"angle_deg": [10, -10]}), "above max"),
        (lambda d: d.update({"max_turn_deg": float("inf")}), "finite"),
        (lambda d: d["search_growth"].update({"step_mm": float("nan")}), "finite"),
        (lambda d: d.update({"max_turn_deg": 0}), "max_turn_deg"),
    ],
)
def test_non_finite_numbers_and_empty_ranges_are_refused(tmp_path, change, message) -> None:
    document = copy.deepcopy(packaged_document())
    change(document)
    (tmp_path / "lumbar.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(DomainError, match=message):
        load_domain("lumbar", tmp_path)


def test_anchors_name_levels_of_the_order(tmp_path) -> None:
    assert load_domain("lumbar").anchors == ("S1",)
    assert load_domain("cervical").anchors == ("C2",)
    document = copy.deepcopy(packaged_document())
    del document["anchors"]  # optional: no anchor, the count rests on the levels' features
    (tmp_path / "lumbar.yaml").write_text(yaml.safe_dump(document))
    assert load_domain("lumbar", tmp_path).anchors == ()
    document["anchors"] = ["S2"]
    (tmp_path / "lumbar.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(DomainError, match="anchors"):
        load_domain("lumbar", tmp_path)


# --- bad documents ----------------------------------------------------------------------------


def _broken(change) -> dict:
    document = copy.deepcopy(packaged_document())
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["pairs"].update(
                {"S1-L4": {"distance_mm": [50, 80], "angle_deg": [-45, 45]}}
            ),
            "not an adjacent",
        ),
        (
            lambda d: d["pairs"].update(
                {"L4-L5": {"distance_mm": [26, 52], "angle_deg": [-45, 45]}}
            ),
            "not an adjacent",
        ),
        (
            lambda d: d["pairs"].update({"S1-X9": {"distance_mm": [26, 52], "angle_deg": [-9, 9]}}),
            "outside 'order'",
        ),
        (
            lambda d: d["pairs"]["L5-L4"].update({"distance_mm": [52, 26]}),
            "min 52.0 above max 26.0",
        ),
        (lambda d: d["pairs"]["L5-L4"].update({"angle_deg": [45, -45]}), "above max"),
        (lambda d: d["pairs"]["L5-L4"].update({"distance_mm": 30}), "[min, max]"),
        (lambda d: d["pairs"]["L5-L4"].update({"distance_mm": [1, 2, 3]}), "[min, max]"),
        (lambda d: d.update({"first_landmark": "L9"}), "first_landmark 'L9'"),
        (lambda d: d["pairs"].pop("L3-L2"), "L3-L2"),
        (lambda d: d.pop("search_growth"), "missing or malformed"),
        (lambda d: d.pop("order"), "missing or malformed"),
        (lambda d: d["default_search_region"].update({"y": [1.0, 0.45]}), "above max"),
        (lambda d: d["search_growth"].update({"step_mm": 0}), "search_growth"),
        (lambda d: d["search_growth"].update({"limit_mm": 3}), "search_growth"),
        (lambda d: d["discs"].update({"L9-L8": ["L9", "L8"]}), "unknown vertebrae"),
        (lambda d: d.update({"max_turn_deg": "steep"}), "missing or malformed"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(change, message):
    with pytest.raises(DomainError) as caught:
        parse_domain(_broken(change), "lumbar.yaml")
    assert message in str(caught.value)


@pytest.mark.parametrize("document", [None, [], ["region", "lumbar"], "lumbar"])
def test_a_document_that_is_not_a_mapping_is_refused(document):
    with pytest.raises(DomainError, match="missing or malformed"):
        parse_domain(document, "lumbar.yaml")


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    (tmp_path / "lumbar.yaml").write_text("region: lumbar\norder: [S1, L5\n  pairs: {")
    with pytest.raises(DomainError, match="not valid YAML"):
        load_domain("lumbar", tmp_path)


def test_an_empty_file_is_refused(tmp_path):
    (tmp_path / "lumbar.yaml").write_text("")
    with pytest.raises(DomainError, match="missing or malformed"):
        load_domain("lumbar", tmp_path)


def test_a_file_for_another_region_is_refused(tmp_path):
    (tmp_path / "lumbar.yaml").write_text((PACKAGED_DIR / "cervical.yaml").read_text())
    with pytest.raises(DomainError, match="describes region 'cervical', not 'lumbar'"):
        load_domain("lumbar", tmp_path)


def test_an_unknown_region_lists_the_packaged_ones(tmp_path):
    with pytest.raises(DomainError) as caught:
        load_domain("thoracic", tmp_path)
    assert "thoracic" in str(caught.value)
    assert "['cervical', 'lumbar']" in str(caught.value)


# --- the value types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("growth", "radii"),
    [
        (SearchGrowth(6, 6, 30), [6, 12, 18, 24, 30]),
        (SearchGrowth(3, 3, 15), [3, 6, 9, 12, 15]),
        (SearchGrowth(5, 4, 15), [5, 9, 13]),  # the limit is not a step: stop below it
        (SearchGrowth(8, 5, 8), [8]),
        # Steps that are not exact in binary floating point still reach the limit.
        (SearchGrowth(0.1, 0.1, 0.3), [0.1, 0.2, 0.3]),
    ],
)
def test_search_growth_radii(growth, radii):
    assert growth.radii() == pytest.approx(radii)


def test_search_growth_of_the_packaged_lumbar_file():
    assert load_domain("lumbar").search_growth.radii() == [6, 12, 18, 24, 30]


def test_pair_range_accepts_its_bounds_inclusive_and_nothing_outside():
    pair = PairRange("L5", "L4", 26.0, 52.0, -45.0, 45.0)
    assert pair.name == "L5-L4"
    assert pair.typical_mm == 39.0
    for distance, angle in [(26.0, 0.0), (52.0, 0.0), (39.0, -45.0), (39.0, 45.0), (26, -45)]:
        assert pair.accepts(distance, angle)
    for distance, angle in [(25.9, 0.0), (52.1, 0.0), (39.0, -45.1), (39.0, 45.1), (0.0, 0.0)]:
        assert not pair.accepts(distance, angle)
    assert not pair.accepts(math.nan, 0.0)
    assert not pair.accepts(39.0, math.nan)


def test_domain_ordered_pair_rank_and_ranges():
    lumbar = load_domain("lumbar")
    assert lumbar.ordered(["L1", "S1", "L3", "C2", "L5-S1", "L5"]) == ["S1", "L5", "L3", "L1"]
    assert lumbar.ordered(("T11",)) == ["T11"]
    assert lumbar.ordered([]) == []
    assert lumbar.rank("S1") == 0 and lumbar.rank("T11") == 7
    assert lumbar.pair("L5", "L4") is lumbar.pair("L4", "L5") is lumbar.pairs[("L5", "L4")]
    assert lumbar.pair("L5", "L3") is None
    assert lumbar.pair("L5", "C3") is None
    ranges = lumbar.to_ranges()
    assert set(ranges) == {f"{a}-{b}" for a, b in zip(lumbar.order, lumbar.order[1:], strict=False)}
    assert ranges["S1-L5"] == (24.0, 52.0, -60.0, 60.0)
    assert all(isinstance(v, float) for values in ranges.values() for v in values)
