"""``labeling-pipeline``: label every study of a data directory, recording the runs in Dagster.

``labeling-pipeline run [--data-dir DIR] [--output-dir DIR] [--partition KEY ...] [--quiet]
[--detach]`` launches the same Dagster jobs as the UI, sensor and schedule
(``labeling_pipeline.defs.jobs``) as runs of workspace.yaml's code location, each in a process
of its own, in the Dagster instance at ``DAGSTER_HOME`` (default: the repository root, whose
``dagster.yaml`` keeps storage under ``.dagster/``): ``make ui`` shows them and can re-execute
them. No daemon is needed; the command starts the code location's server itself.

Exit status: 0 when every run finished (inputs that were rejected are reported, not fatal),
1 when a run failed, 2 for a usage error (e.g. a missing data directory).

Modules: ``main`` (arguments, exit statuses, the entry point), ``run`` (the run loop),
``launch`` (runs of the code location, waiting, progress, cancel; shared with ``backfill``),
``instance`` (the Dagster instance at DAGSTER_HOME), ``errors`` (one-line failure causes),
``report`` (the printed summary). Dagster is imported only when a run starts.
"""

from labeling_pipeline.cli.errors import root_cause
from labeling_pipeline.cli.instance import PROJECT_ROOT, find_dagster_home
from labeling_pipeline.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser, main
from labeling_pipeline.cli.report import format_summary
from labeling_pipeline.cli.run import RunSummary, StudyOutcome, run_pipeline

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROJECT_ROOT",
    "RunSummary",
    "StudyOutcome",
    "build_parser",
    "find_dagster_home",
    "format_summary",
    "main",
    "root_cause",
    "run_pipeline",
]
