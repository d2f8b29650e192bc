"""The study graph on several processes or machines: ``label_study_job``'s assets with Dagster's
Celery executor, each step a Celery task that any worker listening on the broker runs.

The default jobs stay in-process (one process, the model loaded once per run: the fastest on one
machine). This job is for deployments whose workers share the Dagster instance (PostgreSQL,
``deploy/dagster-postgres.yaml``) and the data and output directories (a shared volume). Run
config names the broker, e.g. Redis::

    execution:
      config:
        broker: redis://127.0.0.1:6379/0
        backend: redis://127.0.0.1:6379/0

and workers start with ``dagster-celery worker start -A dagster_celery.app -y celery.yaml``
(``celery.yaml``: that same ``execution`` block). See the README's "Beyond one machine".
"""

import dagster as dg
from dagster_celery import celery_executor

from labeling_pipeline.defs.jobs import LABEL_STUDY_ASSETS

label_study_celery_job = dg.define_asset_job(
    name="label_study_celery_job",
    selection=dg.AssetSelection.assets(*LABEL_STUDY_ASSETS),
    executor_def=celery_executor,
    description="Label one study as label_study_job does, each step a task on the Celery "
    "workers of the broker named in the run config (shared instance and output directory).",
)
