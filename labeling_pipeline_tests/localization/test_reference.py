"""Template references: contrast variants averaged into each reference vector."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.localization.reference import build_template_reference
from labeling_pipeline.localization.template import TemplateError
from labeling_pipeline_tests.localization import feature_phantoms as fp


@pytest.fixture(scope="module")
def template():
    return fp.template()


def test_a_variant_identical_to_the_template_changes_nothing(template):
    template_map, landmarks = template
    domain = load_domain("lumbar")
    plain = build_template_reference(template_map, landmarks, domain)
    doubled = build_template_reference(template_map, landmarks, domain, variant_maps=[template_map])
    np.testing.assert_allclose(doubled.point_vectors, plain.point_vectors, atol=1e-6)


def test_variants_are_averaged_into_unit_reference_vectors(template):
    template_map, landmarks = template
    domain = load_domain("lumbar")
    flipped = replace(template_map, features=-np.asarray(template_map.features)[::-1].copy())
    mixed = build_template_reference(template_map, landmarks, domain, variant_maps=[flipped])
    plain = build_template_reference(template_map, landmarks, domain)
    norms = np.linalg.norm(mixed.point_vectors, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, atol=1e-5)
    assert not np.allclose(mixed.point_vectors, plain.point_vectors)


def test_a_variant_on_another_grid_is_refused(template):
    template_map, landmarks = template
    smaller = replace(template_map, features=np.asarray(template_map.features)[:, :-2, :])
    with pytest.raises(TemplateError, match="not on the template's grid"):
        build_template_reference(
            template_map, landmarks, load_domain("lumbar"), variant_maps=[smaller]
        )
