"""Runs that name their process: which ended runs are still exiting."""

import subprocess
import sys

import dagster as dg

from labeling_pipeline.defs.runs import ended_runs_still_exiting, process_tags
from labeling_pipeline.locks import ProcessIdentity


def _run(instance: dg.DagsterInstance, identity: ProcessIdentity, ended: bool) -> str:
    run = instance.create_run_for_job(
        dg.GraphDefinition(name="noop", node_defs=[]).to_job(),
        tags={"dagster/backfill": "b1", **process_tags(identity)},
    )
    if ended:
        instance.report_run_failed(run)
    return run.run_id


def test_only_ended_runs_whose_process_lives_are_still_exiting() -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    me = ProcessIdentity.current()
    gone = ProcessIdentity(exited.pid, me.host, None, "x")
    with dg.DagsterInstance.ephemeral() as instance:
        exiting = _run(instance, me, ended=True)  # ended, its process (this one) alive
        _run(instance, gone, ended=True)  # ended, process gone
        _run(instance, me, ended=False)  # still running: not "ending"
        other = instance.create_run_for_job(
            dg.GraphDefinition(name="noop", node_defs=[]).to_job(), tags=process_tags(me)
        )
        instance.report_run_failed(other)  # another backfill's (no tag)

        assert ended_runs_still_exiting(instance, {"dagster/backfill": "b1"}) == [exiting]
        # A process that tears down for longer than the grace is not waited for.
        assert ended_runs_still_exiting(instance, {"dagster/backfill": "b1"}, grace_s=0) == []
