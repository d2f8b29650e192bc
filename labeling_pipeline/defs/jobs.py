"""The two jobs that run the pipeline: refresh what every study needs, then label one study.

``catalog_and_template_job`` (unpartitioned) scans the data directory and builds the template's
reference features; ``label_study_job`` runs features, localization and the label dataset with
its checks for a batch of ``studies`` partitions (one study, or a range of keys: backfill
runs hold up to ``STUDIES_PER_RUN`` studies each). ``labeling-pipeline run``, the sensor and
partition backfills in the UI run these; declarative automation (``label_automation``) runs the
same assets through Dagster's asset job, batched by the same backfill policy.
"""

import dagster as dg

# One process per run (in-process executor): the steps of a run follow one another anyway, and
# measured on 2 cores a process per step cost 10-20 s of imports each against about 70 ms of work
# per image (benchmarks/scale.py); the feature model is loaded once per run, and the process
# recorded in the run's tags is the one that runs it.

CATALOG_AND_TEMPLATE_ASSETS = ("dicom_catalog", "template_reference")
LABEL_STUDY_ASSETS = (
    "pixel_features",
    "vertebra_localization",
    "label_dataset",
    "curated_labels",
    "pacs_structured_reports",
)

catalog_and_template_job = dg.define_asset_job(
    name="catalog_and_template_job",
    selection=dg.AssetSelection.assets(*CATALOG_AND_TEMPLATE_ASSETS),
    executor_def=dg.in_process_executor,
    description="Scan incoming/ and archive/ (registering study partitions) and build the "
    "template's reference features.",
)

label_study_job = dg.define_asset_job(
    name="label_study_job",
    # Partitioned by "studies", as its assets are (Dagster infers it from the selection).
    selection=dg.AssetSelection.assets(*LABEL_STUDY_ASSETS),
    executor_def=dg.in_process_executor,
    description="Label a batch of studies: pixel features, vertebra localization, label dataset, "
    "overlays, the curated labels with review decisions, SRs (stored on the DICOMweb server "
    "with LABELING_DICOMWEB_STORE=1), and their checks.",
)

qa_report_job = dg.define_asset_job(
    name="qa_report_job",
    selection=dg.AssetSelection.assets("qa_report"),
    description="Write the dataset QA report over every curated study (qa/report.html).",
)
