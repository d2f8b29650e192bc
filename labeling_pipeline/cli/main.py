"""Argument parsing and the console-script entry point of ``labeling-pipeline``."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from labeling_pipeline.cli.instance import find_dagster_home
from labeling_pipeline.cli.report import format_summary
from labeling_pipeline.cli.run import run_pipeline
from labeling_pipeline.defs.settings import (
    DATA_DIR_ENV,
    FEATURE_WEIGHTS_ENV,
    OUTPUT_DIR_ENV,
    PipelinePaths,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3  # the output directory is in use by another process with other inputs


def _absolute_weights_setting() -> None:
    # A relative checkpoint path must survive the change into DAGSTER_HOME.
    weights = os.environ.get(FEATURE_WEIGHTS_ENV, "").strip()
    if weights and Path(weights).expanduser().exists():
        os.environ[FEATURE_WEIGHTS_ENV] = str(Path(weights).expanduser().resolve())


def _run_command(args: argparse.Namespace) -> int:
    paths = PipelinePaths.resolve(args.data_dir, args.output_dir)
    if not paths.data_dir.is_dir():
        print(f"labeling-pipeline: data directory {paths.data_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    _absolute_weights_setting()
    home = find_dagster_home()
    if home is None:
        print(
            "labeling-pipeline: DAGSTER_HOME is not set and no dagster.yaml was found; "
            "runs are not recorded",
            file=sys.stderr,
        )
    elif not home.is_dir():
        print(f"labeling-pipeline: DAGSTER_HOME {home} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    from labeling_pipeline.cli.launch import DetachNeedsDaemon, LocationUnavailable
    from labeling_pipeline.locks import OutputDirectoryBusy

    try:
        summary = run_pipeline(
            paths, args.partition, args.log_level, home, quiet=args.quiet, detach=args.detach
        )
    except OutputDirectoryBusy as error:
        print(f"labeling-pipeline: {error}", file=sys.stderr)
        return EXIT_BUSY
    except (ValueError, DetachNeedsDaemon) as error:
        print(f"labeling-pipeline: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LocationUnavailable as error:
        print(f"labeling-pipeline: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(format_summary(summary))
    if summary.interrupted_by:
        return 128 + summary.interrupted_by
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _study_date(text: str) -> str:
    """``YYYY-MM-DD`` (a command-line date) as DICOM's ``YYYYMMDD``."""
    try:
        return datetime.date.fromisoformat(text).strftime("%Y%m%d")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from error


def _backfill_command(args: argparse.Namespace) -> int:
    from labeling_pipeline.cli.backfill import format_backfill_summary, launch_backfill

    paths = PipelinePaths.resolve(args.data_dir, args.output_dir)
    if not paths.data_dir.is_dir():
        print(f"labeling-pipeline: data directory {paths.data_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if args.date_to < args.date_from:
        print("labeling-pipeline: --to is before --from", file=sys.stderr)
        return EXIT_USAGE
    _absolute_weights_setting()
    home = find_dagster_home()
    if home is None or not home.is_dir():
        print(
            "labeling-pipeline: a backfill needs a Dagster instance (DAGSTER_HOME or the "
            "repository's dagster.yaml) that its daemon shares",
            file=sys.stderr,
        )
        return EXIT_USAGE
    summary = launch_backfill(
        paths,
        args.date_from,
        args.date_to,
        args.source,
        home,
        quiet=args.quiet,
        detach=args.detach,
    )
    print(format_backfill_summary(summary))
    if summary.interrupted_by:
        return 128 + summary.interrupted_by
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _review_command(args: argparse.Namespace) -> int:
    from labeling_pipeline.cli.review import serve_review

    paths = PipelinePaths.resolve(args.data_dir, args.output_dir)
    if not paths.data_dir.is_dir():
        print(f"labeling-pipeline: data directory {paths.data_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    serve_review(paths, args.host, args.port, find_dagster_home())
    return EXIT_OK


def _export_command(args: argparse.Namespace) -> int:
    from labeling_pipeline.cli.review import export_coco_file

    paths = PipelinePaths.resolve(args.data_dir, args.output_dir)
    try:
        path, images = export_coco_file(paths, args.output, args.dates)
    except (ValueError, LookupError) as error:
        print(f"labeling-pipeline: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"COCO keypoints of {images} images: {path} (slices in {path.parent / 'images'})")
    return EXIT_OK


def _directory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help=f"data directory (default: ${DATA_DIR_ENV}, else 'data')"
    )
    parser.add_argument(
        "--output-dir", help=f"output directory (default: ${OUTPUT_DIR_ENV}, else 'data/outputs')"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labeling-pipeline",
        description="Label vertebrae in spine DICOM studies from one labelled template image.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="label every study under the data directory",
        description="Catalogue incoming/ and archive/, build the template reference and label "
        "every study: runs of the code location (as the UI launches them, each in a process "
        "of its own) recorded in the Dagster instance at DAGSTER_HOME. Shows progress; "
        "Ctrl-C cancels the runs it launched.",
    )
    run.add_argument(
        "--data-dir",
        help=f"data directory (default: ${DATA_DIR_ENV}, else 'data')",
    )
    run.add_argument(
        "--output-dir",
        help=f"output directory (default: ${OUTPUT_DIR_ENV}, else 'data/outputs')",
    )
    run.add_argument(
        "--partition",
        action="append",
        metavar="KEY",
        help="label only this study partition (YYYYMMDD-xxxxxxxx); repeat for several",
    )
    run.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Dagster events printed while running (default: WARNING)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.add_argument(
        "--detach",
        action="store_true",
        help="once the catalog is made, hand the label runs to the running daemon's queue "
        "(make ui) and return; no QA report then",
    )
    run.set_defaults(handler=_run_command)

    backfill = commands.add_parser(
        "backfill",
        help="label the studies of a StudyDate range with a Dagster backfill",
        description="Retrieve the range's studies from the DICOMweb server when "
        "LABELING_DICOMWEB_URL is set, catalogue the data directory, then launch a Dagster "
        "backfill of the studies whose StudyDate lies in the range (runs of up to 128 studies "
        "each, run by the daemon; one is started when none is running) and wait for it. "
        "Studies already labelled from their current files are left out, so the same command "
        "resumes an interrupted backfill. Ctrl-C cancels the backfill and its runs.",
    )
    backfill.add_argument(
        "--from", dest="date_from", required=True, type=_study_date, metavar="YYYY-MM-DD"
    )
    backfill.add_argument(
        "--to", dest="date_to", required=True, type=_study_date, metavar="YYYY-MM-DD"
    )
    backfill.add_argument(
        "--source",
        choices=["archive", "incoming", "dicomweb"],
        help="only studies from this folder of the data directory (default: any)",
    )
    backfill.add_argument("--quiet", action="store_true", help="no progress line")
    backfill.add_argument(
        "--detach",
        action="store_true",
        help="launch the backfill and return; the running daemon (make ui) carries it out",
    )
    _directory_options(backfill)
    backfill.set_defaults(handler=_backfill_command)

    review = commands.add_parser(
        "review",
        help="the review web app: correct flagged landmarks, make a template",
        description="Serve the review app on 127.0.0.1: a queue of images with flagged "
        "landmarks, an image view to correct them (stored under corrections/), and a page to "
        "make a template.",
    )
    review.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    review.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1; the app has no login, keep it local)",
    )
    _directory_options(review)
    review.set_defaults(handler=_review_command)

    export = commands.add_parser("export", help="export the curated dataset")
    formats = export.add_subparsers(dest="format", required=True)
    coco = formats.add_parser(
        "coco",
        help="COCO keypoints JSON with the labelled slices as PNG",
        description="Write the curated dataset (labels with the latest review decisions) as "
        "COCO keypoints; flagged landmarks get visibility 0.",
    )
    coco.add_argument(
        "--output", type=Path, help="JSON file (default: coco/keypoints.json in the output dir)"
    )
    coco.add_argument(
        "--dates",
        choices=["keep", "year"],
        default="keep",
        help="study dates as they are, or only the year (full dates can identify people)",
    )
    _directory_options(coco)
    coco.set_defaults(handler=_export_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit status."""
    from labeling_pipeline.cli.run import Interrupted

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Interrupted as interruption:  # before the run loop could report
        print("labeling-pipeline: interrupted before any run started", file=sys.stderr)
        return 128 + interruption.signum
    except KeyboardInterrupt:
        print("labeling-pipeline: interrupted", file=sys.stderr)
        return 130
