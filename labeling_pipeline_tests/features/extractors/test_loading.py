"""load_extractor: unknown model names are rejected."""

from __future__ import annotations

import pytest

from labeling_pipeline.features.extractors import load_extractor


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="unknown feature model"):
        load_extractor("resnet-9000", device="cpu")
