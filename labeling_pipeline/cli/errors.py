"""One line per failure: the error the pipeline's code raised, not Dagster's wrappers."""

from __future__ import annotations


def root_cause(error: object) -> str:
    """One line naming the error that the pipeline's code raised, from a Dagster error
    (``SerializableErrorInfo``): ``FeatureWeightsError: open_clip:ViT-B-16: no weights
    given...`` rather than Dagster's wrapper ("Error occurred while executing op ...")."""
    while getattr(error, "cause", None) is not None and str(
        getattr(error, "cls_name", "")
    ).startswith("Dagster"):
        error = error.cause  # type: ignore[attr-defined]
    lines = str(getattr(error, "message", "") or "").strip().splitlines()
    if not lines:
        return "step failed"
    name, separator, rest = lines[0].partition(": ")
    if not separator:
        return lines[0]
    name = name.rsplit(".", 1)[-1]  # "package.module.SomeError: text" -> "SomeError: text"
    return rest if name == "Failure" else f"{name}: {rest}"  # a Failure's text says it all


def failure_text(result: object) -> str:
    """The first step failure of a run, in one line; else why the run itself failed (a
    launched run can fail outside its steps: a resource, the run worker)."""
    for event in result.get_step_failure_events():  # type: ignore[attr-defined]
        return f"{event.step_key}: {root_cause(event.step_failure_data.error)}"
    error = getattr(result, "run_failure_error", lambda: None)()
    if error is not None:
        return root_cause(error)
    message = getattr(result, "run_failure_message", lambda: "")()
    return message.strip().splitlines()[0] if message.strip() else "run failed"
