"""One Dagster partition per study, keyed as ingestion keys them (``<source>-YYYYMMDD-<8 hex>``).

The key is :func:`labeling_pipeline.imaging.dicom.partition_key`: readable, free of patient data,
and it names the study's folder (``archive``, ``dicomweb``, ``incoming``), so the UI's partition
filters select a source and its dates (``archive-2019``). Partitions are dynamic:
``dicom_catalog``, the ``new_study_sensor`` and ``labeling-pipeline run`` add a key for every
study they find, in key order (:func:`registration_order`): each source's new studies together,
archive first, so that in the UI, whose partition lists and status bars follow the order of
registration, each source's studies make a few contiguous blocks (the catalog's metadata names
them: ``archive_partitions``, ``incoming_partitions``, ...), and the studies that automation
labels (incoming, server) fill batches of contiguous keys.

Runs of the per-study assets label a batch of studies (a range of partition keys): the feature
model is loaded once per run and the images of the batch go through the network together, so a
backfill costs about the work itself plus one run's start-up per batch.
"""

import os

import dagster as dg
import pandas as pd

from labeling_pipeline.imaging.dicom import key_source, labelled_partition_keys

STUDIES_PARTITION_NAME = "studies"

# Studies per run of a backfill: large enough that a run's start-up (a process importing torch
# and Dagster, loading the definitions and the model: 10-15 s on 2 cores) is small beside its
# work (about 200 ms per image with overlays and SRs: 25 s for 128), small enough that a failed
# batch costs little to redo and that progress shows (benchmarks/scale.py: at 64 per run, the eight
# start-ups of a 500-study backfill took about a fifth of its time). A run holds 16 studies'
# images at a time whatever its batch, so its memory does not set this. LABELING_STUDIES_PER_RUN
# changes it (the code location's processes must agree: set it where they all start).
STUDIES_PER_RUN_ENV = "LABELING_STUDIES_PER_RUN"


def _studies_per_run(default: int = 128) -> int:
    text = os.environ.get(STUDIES_PER_RUN_ENV, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{STUDIES_PER_RUN_ENV}={text!r}: expected a whole number of studies >= 1")
    return int(text)


STUDIES_PER_RUN = _studies_per_run()

# The concurrency pool of the model-heavy step (dagster.yaml limits it): one batch of feature
# extraction at a time keeps the machine's cores for the network instead of contention.
FEATURE_MODEL_POOL = "feature_model"

studies_partitions = dg.DynamicPartitionsDefinition(name=STUDIES_PARTITION_NAME)

studies_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=STUDIES_PER_RUN)


# Order of registration in one catalog run, which is the keys' own order: archive studies first,
# then the server's, then the incoming ones, so that the studies automation labels (incoming,
# server) are one range at the end and fill batches of contiguous keys.
SOURCE_ORDER = ("archive", "dicomweb", "incoming")


def study_sources(catalog: pd.DataFrame) -> dict[str, str]:
    """Partition key -> the study's source, as its key names it, for the studies with an image
    to label (a study with files in incoming/ and archive/ is keyed ``incoming``)."""
    return {key: key_source(key) or "" for key in labelled_partition_keys(catalog)}


def registration_order(catalog: pd.DataFrame) -> list[str]:
    """The catalog's study partition keys, grouped by source (:data:`SOURCE_ORDER`), each group
    sorted by study date: the keys sorted, as each starts with its source."""
    return labelled_partition_keys(catalog)


def selection_text(ordered: list[str], wanted: set[str] | list[str]) -> str:
    """``wanted`` keys as Dagster writes partition selections: contiguous runs of ``ordered`` (the
    partitions' order in the instance) as ``[first...last]``, single keys alone, comma-separated;
    few terms when each source was registered together."""
    chosen = set(wanted)
    terms: list[str] = []
    run: list[str] = []
    for key in [*ordered, None]:
        if key is not None and key in chosen:
            run.append(key)
            continue
        if run:
            terms.append(run[0] if len(run) == 1 else f"[{run[0]}...{run[-1]}]")
            run = []
    return ", ".join(terms)


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
