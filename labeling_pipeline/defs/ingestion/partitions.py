"""One Dagster partition per study, keyed as ingestion keys them (``YYYYMMDD-<8 hex>``).

The key is :func:`labeling_pipeline.imaging.dicom.partition_key`: readable, sorted by study date,
and free of patient data. Partitions are dynamic: ``dicom_catalog``, the ``new_study_sensor`` and
``labeling-pipeline run`` add a key for every study they find.

Runs of the per-study assets label a batch of studies (a range of partition keys): the feature
model is loaded once per run and the images of the batch go through the network together, so a
backfill costs about the work itself plus one run's start-up per batch.
"""

import dagster as dg

STUDIES_PARTITION_NAME = "studies"

# Studies per run of a backfill: large enough that a run's start-up (a process importing torch
# and Dagster, seconds) is small beside its work (about 70 ms per image), small enough that a
# failed batch costs little to redo and that progress shows.
STUDIES_PER_RUN = 64

# The concurrency pool of the model-heavy step (dagster.yaml limits it): one batch of feature
# extraction at a time keeps the machine's cores for the network instead of contention.
FEATURE_MODEL_POOL = "feature_model"

studies_partitions = dg.DynamicPartitionsDefinition(name=STUDIES_PARTITION_NAME)

studies_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=STUDIES_PER_RUN)


def contiguous_batches(ordered: list[str], wanted: list[str], size: int) -> list[list[str]]:
    """``wanted`` keys cut into batches of at most ``size`` that are each a contiguous range of
    ``ordered`` (the partitions' order in the instance: a run's range of dynamic partition keys
    holds every key between its first and its last)."""
    chosen = set(wanted)
    batches: list[list[str]] = []
    current: list[str] = []
    for key in ordered:
        if key in chosen and len(current) < size:
            current.append(key)
            continue
        if current:
            batches.append(current)
        current = [key] if key in chosen else []
    if current:
        batches.append(current)
    return batches


def range_tags(batch: list[str]) -> dict[str, str]:
    """Run tags that make a run materialize the partition range of ``batch``."""
    return {
        "dagster/asset_partition_range_start": batch[0],
        "dagster/asset_partition_range_end": batch[-1],
    }
