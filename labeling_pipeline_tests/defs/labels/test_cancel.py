"""A batch of studies is one long step: it stops at the next study once its run is canceled."""

from types import SimpleNamespace

import dagster as dg
import pytest

from labeling_pipeline.defs.labels.assets import stop_if_canceled


@pytest.mark.parametrize(
    ("status", "stops"),
    [
        (dg.DagsterRunStatus.STARTED, False),
        (dg.DagsterRunStatus.CANCELING, True),
        (dg.DagsterRunStatus.CANCELED, True),
    ],
)
def test_the_step_stops_once_its_run_is_being_canceled(status, stops):
    instance = dg.DagsterInstance.ephemeral()
    run = instance.add_run(dg.DagsterRun(job_name="label_study_job", status=status))
    context = SimpleNamespace(instance=instance, run_id=run.run_id)
    if stops:
        # The interrupt Dagster turns into a canceled run (not a failed one).
        with pytest.raises(dg.DagsterExecutionInterruptedError, match="after 3 of 8 studies"):
            stop_if_canceled(context, "after 3 of 8 studies")
    else:
        stop_if_canceled(context, "after 3 of 8 studies")
