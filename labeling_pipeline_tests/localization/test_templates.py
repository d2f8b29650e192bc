"""Several templates: finding them, merging an alternative's results into the default's, and
the bounded search (hand-made feature maps and results; no CNN)."""

from __future__ import annotations

import json
import math

import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.localization.bundle import NamedTemplate, TemplateBundle
from labeling_pipeline.localization.reference import build_template_reference
from labeling_pipeline.localization.result import NEEDS_REVIEW, OK, LandmarkResult
from labeling_pipeline.localization.search import SearchSettings
from labeling_pipeline.localization.study import (
    ImageLocalization,
    TemplateChoice,
    localize_image,
    merge_alternative,
)
from labeling_pipeline.localization.template import (
    DEFAULT_TEMPLATE,
    named_template_files,
    template_files,
)
from labeling_pipeline_tests.localization import feature_phantoms as fp

SPACING = (1.0, 1.0)
ORDINARY = fp.SpineLayout(seed=1)
L1_OUT = fp.cropped(ORDINARY, top=22)  # L1's centre out of view


@pytest.fixture(scope="module")
def domain():
    return load_domain("lumbar")


@pytest.fixture(scope="module")
def bundle(domain) -> TemplateBundle:
    template_map, template = fp.template()
    return TemplateBundle(
        build_template_reference(template_map, template, domain), template, domain
    )


# --- finding templates ---------------------------------------------------------------------------


def _template_folder(folder, landmarks: bool = True, image: bool = True) -> None:
    folder.mkdir(parents=True)
    if image:
        (folder / "template.dcm").write_bytes(b"DICM")
    if landmarks:
        (folder / "landmarks.json").write_text(json.dumps({"region": "lumbar", "landmarks": []}))


def test_named_templates_are_the_complete_sub_folders_by_name(tmp_path):
    template_dir = tmp_path / "template"
    _template_folder(template_dir / "t2")
    _template_folder(template_dir / "T1_sag")
    _template_folder(template_dir / "half", landmarks=False)
    _template_folder(template_dir / "bad name")
    _template_folder(template_dir / "default")
    _template_folder(template_dir / ".tmp-123")
    found, problems = named_template_files(template_dir)
    assert [f.name for f in found] == ["T1_sag", "t2"]
    assert found[1].image == template_dir / "t2" / "template.dcm"
    assert len(problems) == 3
    assert any("'half'" in p and "landmarks.json" in p for p in problems)
    assert any("'bad name'" in p for p in problems)
    assert any("'default'" in p for p in problems)
    assert template_files(template_dir).name == DEFAULT_TEMPLATE
    prefixed, _ = named_template_files(template_dir, prefix="bank/")
    assert [f.name for f in prefixed] == ["bank/T1_sag", "bank/t2"]
    assert named_template_files(tmp_path / "absent") == ([], [])


# --- merging an alternative --------------------------------------------------------------------


def _chain(
    statuses: dict[str, str], y0: float = 250.0, step: float = 36.0, x: float = 110.0
) -> list[LandmarkResult]:
    """S1 at ``y0``, each vertebra ``step`` px above the previous, straight up (1 mm pixels)."""
    results = []
    for k, name in enumerate(("S1", "L5", "L4", "L3", "L2", "L1")):
        status = statuses.get(name, OK)
        results.append(
            LandmarkResult(name, "vertebra", x, y0 - k * step, 0.8, status, confidence=0.9)
        )
    return results


def _by_name(results):
    return {r.name: r for r in results}


def test_an_alternative_fills_only_what_the_default_left_for_review(domain):
    default = _chain({"L1": NEEDS_REVIEW, "L2": NEEDS_REVIEW})
    default[-1].confidence = 0.3
    alternative = _chain({"S1": NEEDS_REVIEW}, y0=252.0)  # 2 px lower: agrees
    merged, sources = merge_alternative(default, alternative, "t1", domain, SPACING, 10.0)
    by_name = _by_name(merged)
    assert [r.name for r in merged] == [r.name for r in default]
    assert {n for n, s in zip(_by_name(merged), sources, strict=True) if s == "t1"} == {"L1", "L2"}
    assert by_name["L1"].status == OK and by_name["L1"].y == 252.0 - 5 * 36.0
    # What the default placed stays the default's, even where the alternative is not ok.
    assert by_name["S1"] is default[0] and by_name["L5"] is default[1]


def test_an_alternative_that_counts_other_levels_is_not_used(domain):
    default = _chain({"L1": NEEDS_REVIEW})
    shifted = _chain({}, y0=250.0 - 36.0)  # every level one body higher
    assert merge_alternative(default, shifted, "t1", domain, SPACING, 10.0) is None


def test_an_alternative_that_breaks_the_chain_is_not_used(domain):
    default = _chain({"L1": NEEDS_REVIEW, "L2": NEEDS_REVIEW, "L3": NEEDS_REVIEW})
    alternative = _chain({"S1": NEEDS_REVIEW, "L5": NEEDS_REVIEW, "L4": NEEDS_REVIEW})
    for result in alternative[3:]:
        result.y -= 60.0  # its L3..L1 far above the default's L4: a 96 mm step
    assert merge_alternative(default, alternative, "t1", domain, SPACING, 10.0) is None


# --- the bounded search --------------------------------------------------------------------------


def test_alternatives_are_not_searched_where_the_default_places_everything(bundle):
    other = NamedTemplate("other", bundle.reference, bundle.landmarks)
    located = localize_image(fp.render(ORDINARY), bundle, SearchSettings(), SPACING, [other])
    assert all(r.status == OK for r in located.results)
    assert located.tried == 1 and set(located.templates) == {DEFAULT_TEMPLATE}
    assert located.template == DEFAULT_TEMPLATE


def test_at_most_max_alternatives_are_searched_and_none_moves_the_default(bundle):
    others = [NamedTemplate(f"copy{k}", bundle.reference, bundle.landmarks) for k in range(5)]
    fmap = fp.render(L1_OUT)
    alone = localize_image(fmap, bundle, SearchSettings(), SPACING)
    located = localize_image(
        fmap, bundle, SearchSettings(), SPACING, others, TemplateChoice(max_alternatives=2)
    )
    assert _by_name(alone.results)["L1"].status == NEEDS_REVIEW
    assert located.tried == 3
    # Copies of the default find what it found: nothing to add, the default's result stands.
    assert located.templates == [DEFAULT_TEMPLATE] * len(located.results)
    for before, after in zip(alone.results, located.results, strict=True):
        assert (before.status, before.x, before.y) == (after.status, after.x, after.y) or (
            math.isnan(before.x) and math.isnan(after.x)
        )


def test_the_image_template_is_the_one_that_placed_most():
    assert ImageLocalization([], ["default", "t1", "t1"]).template == "t1"
    assert ImageLocalization([], ["default", "default", "t1"]).template == DEFAULT_TEMPLATE
    assert ImageLocalization([], ["default", "t1"]).template == DEFAULT_TEMPLATE
