"""One-line failure causes, without Dagster's wrappers."""

from dagster._utils.error import SerializableErrorInfo

from labeling_pipeline.cli import (
    root_cause,
)


def test_root_cause_skips_dagster_wrappers() -> None:
    inner = SerializableErrorInfo(
        "labeling_pipeline.features.extractors.FeatureWeightsError: no weights\n", [], "X"
    )
    wrapper = SerializableErrorInfo(
        "Error occurred while executing op", [], "DagsterExecutionStepExecutionError", inner
    )
    assert root_cause(wrapper) == "FeatureWeightsError: no weights"
    failure = SerializableErrorInfo(
        "dagster._core.definitions.events.Failure: the template cannot be used", [], "Failure"
    )
    assert root_cause(failure) == "the template cannot be used"
