"""Nightly re-labelling of the studies in ``incoming/``.

Labels are made again with the current template reference and domain knowledge (after either
changed, or a better feature model was chosen). Feature maps whose image did not change are
reused, so a night without changes costs little more than the localization itself.
"""

import dagster as dg

from labeling_pipeline.defs.ingestion.partitions import studies_partitions
from labeling_pipeline.defs.jobs import label_study_job
from labeling_pipeline.defs.resources import PipelineResource
from labeling_pipeline.imaging.dicom import labelled_partition_keys
from labeling_pipeline.labels.catalog import read_catalog


@dg.schedule(
    name="nightly_relabel_schedule",
    job=label_study_job,
    cron_schedule="0 2 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 02:00, label every incoming study of the catalog again.",
)
def nightly_relabel_schedule(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineResource
) -> list[dg.RunRequest] | dg.SkipReason:
    catalog = read_catalog(pipeline.paths().catalog_path)
    known = set(context.instance.get_dynamic_partitions(studies_partitions.name))
    keys = [
        key
        for key in labelled_partition_keys(catalog[catalog["source"] == "incoming"])
        if key in known
    ]
    if not keys:
        return dg.SkipReason("no incoming study in the catalog; run the catalog first")
    night = context.scheduled_execution_time.strftime("%Y%m%d")
    return [
        dg.RunRequest(
            partition_key=key,
            run_key=f"nightly-{night}-{key}",
            tags={"labeling/trigger": "nightly_relabel_schedule"},
        )
        for key in keys
    ]
