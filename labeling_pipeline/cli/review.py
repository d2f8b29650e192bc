"""``labeling-pipeline review`` (the review web app) and ``labeling-pipeline export coco``."""

from __future__ import annotations

from pathlib import Path

from labeling_pipeline.defs.settings import PipelinePaths


def rebuild_template_reference(paths: PipelinePaths, dagster_home: Path | None) -> str:
    """Run ``catalog_and_template_job`` (after a template was saved in the app), recorded in
    the Dagster instance like ``labeling-pipeline run``; returns what happened, in words."""
    from labeling_pipeline.cli.errors import failure_text
    from labeling_pipeline.cli.instance import environment_variables, instance_at
    from labeling_pipeline.definitions import defs
    from labeling_pipeline.defs.jobs import catalog_and_template_job

    with environment_variables(_path_variables(paths)), instance_at(dagster_home) as instance:
        job = defs.resolve_job_def(catalog_and_template_job.name)
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    if result.success:
        return (
            "template reference rebuilt; run `labeling-pipeline run` to label the studies with it"
        )
    return f"template saved, but rebuilding its reference failed: {failure_text(result)}"


def _path_variables(paths: PipelinePaths) -> dict[str, str]:
    from labeling_pipeline.defs.settings import DATA_DIR_ENV, OUTPUT_DIR_ENV

    return {DATA_DIR_ENV: str(paths.data_dir), OUTPUT_DIR_ENV: str(paths.output_dir)}


def serve_review(paths: PipelinePaths, host: str, port: int, dagster_home: Path | None) -> None:
    """Serve the review app over ``paths`` until interrupted."""
    from labeling_pipeline.review import serve

    print(
        f"review app: http://{host}:{port}/  (data {paths.data_dir}, outputs "
        f"{paths.output_dir}; Ctrl-C stops it)"
    )
    serve(
        paths.data_dir,
        paths.output_dir,
        host=host,
        port=port,
        on_template_saved=lambda _data_dir: rebuild_template_reference(paths, dagster_home),
    )


def export_coco_file(paths: PipelinePaths, output: Path | None, dates: str) -> tuple[Path, int]:
    """Write the COCO keypoints of the curated dataset (labels joined with the corrections as
    they are now); returns the file and the number of images."""
    from labeling_pipeline.corrections import curate_labels, read_corrections
    from labeling_pipeline.corrections.publish import export_coco_dataset
    from labeling_pipeline.labels.catalog import read_catalog
    from labeling_pipeline.labels.dataset import read_labels

    labels = read_labels(paths.labels_dir)
    if labels.empty:
        raise ValueError(f"no labels under {paths.labels_dir}: run `labeling-pipeline run` first")
    curated = curate_labels(labels, read_corrections(paths.corrections_dir))
    target = Path(output) if output else paths.coco_path
    document = export_coco_dataset(
        curated, read_catalog(paths.catalog_path), paths.data_dir, target, dates=dates
    )
    return target, len(document["images"])
