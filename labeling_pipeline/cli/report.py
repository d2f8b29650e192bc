"""The report printed at the end of ``labeling-pipeline run``."""

from __future__ import annotations

import signal

from labeling_pipeline.cli.pacs import SR_STORE_COUNTS
from labeling_pipeline.cli.run import RunSummary


def format_summary(summary: RunSummary) -> str:
    """The report printed at the end of ``labeling-pipeline run`` (no patient data in it)."""
    done = sum(study.success for study in summary.studies)
    lines = [
        f"data directory:   {summary.paths.data_dir}",
        f"output directory: {summary.paths.output_dir}",
        f"dagster instance: {summary.dagster_home}",
        f"files seen:       {summary.files_seen}",
        f"rejected files:   {summary.rejected_files}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(summary.rejections.items())) + ")"
            if summary.rejections
            else ""
        ),
    ]
    if summary.dicomweb:
        lines.append(f"dicomweb:         {summary.dicomweb}")
    if summary.stale_runs_failed:
        lines.append(
            f"stale runs:       {len(summary.stale_runs_failed)} left unfinished by a dead "
            "process, marked failed"
        )
    if summary.temporary_files_swept:
        lines.append(
            f"swept:            {summary.temporary_files_swept} temporary files of interrupted "
            "writes"
        )
    if summary.prepare_error:
        lines.append(f"FAILED before labelling (run {summary.prepare_run_id}):")
        lines.append(f"  {summary.prepare_error}")
        return "\n".join(lines)
    if summary.interrupted_by and not summary.studies_planned:
        name = signal.Signals(summary.interrupted_by).name
        lines.append(
            f"INTERRUPTED by {name} before labelling; no study was started"
            + (f" ({_runs(len(summary.canceled_runs))} canceled)" if summary.canceled_runs else "")
        )
        return "\n".join(lines)
    if summary.detached_runs:
        lines.append(
            f"detached:         {summary.studies_planned} studies in "
            f"{len(summary.detached_runs)} label runs queued for the daemon "
            f"({', '.join(run_id[:8] for run_id in summary.detached_runs[:5])}"
            + (", ..." if len(summary.detached_runs) > 5 else "")
            + "); follow them in the UI (make ui); no QA report made"
        )
        return "\n".join(lines)
    lines += [
        f"studies:          {len(summary.studies)} ({done} labelled, "
        f"{len(summary.studies) - done} failed)",
        f"images labelled:  {summary.images_labelled}",
        f"landmarks:        {summary.landmarks_ok} ok, "
        f"{summary.landmarks_needs_review} needs_review",
    ]
    if summary.curated_statuses:
        lines.append(
            "after review:     "
            + ", ".join(f"{n} {status}" for status, n in summary.curated_statuses.items() if n)
        )
    checks_failed = [c for s in summary.studies for c in s.failed_checks]
    checks_passed = sum(s.checks_passed for s in summary.studies)
    checks_warned = [c for s in summary.studies for c in s.warned_checks]
    lines.append(
        f"label checks:     {checks_passed} passed, {len(checks_warned)} warnings, "
        f"{len(checks_failed)} failed"
    )
    to_review = sum(
        any(c.startswith("curated_needs_review") for c in s.warned_checks) for s in summary.studies
    )
    if to_review:
        lines.append(
            f"to review:        {to_review} studies with flagged landmarks "
            "(`labeling-pipeline review`)"
        )
    for study in summary.studies:
        if not study.success:
            lines.append(f"  FAILED {study.partition_key} (run {study.run_id}): {study.error}")
        for check in study.failed_checks:
            lines.append(f"  check {study.partition_key}: {check}")
    sr_store = [s.sr_store for s in summary.studies if s.sr_store]
    if sr_store:
        total = {name: sum(c.get(name, 0) for c in sr_store) for name in SR_STORE_COUNTS}
        lines.append(
            f"SRs on server:    {total['stored']} stored, {total['already_stored']} already "
            f"stored, {total['failed']} failed"
            + (" (tried again next run)" if total["failed"] else "")
            + f", {total['not_from_server']} images not from the server"
        )
    if summary.qa_report_error:
        lines.append(f"QA report FAILED: {summary.qa_report_error}")
    elif summary.studies:
        lines.append(f"QA report:        {summary.paths.output_dir / 'qa' / 'report.html'}")
    if summary.reconciled is not None:
        lines.append(
            f"removed outputs:  {summary.reconciled} images no longer labelled (labels, "
            "overlays, SRs, features)"
        )
    elif summary.reconcile_skipped:
        lines.append(f"removed outputs:  none checked ({summary.reconcile_skipped})")
    if summary.interrupted_by:
        name = signal.Signals(summary.interrupted_by).name
        lines.append(
            f"INTERRUPTED by {name}: {len(summary.studies)} of {summary.studies_planned} "
            f"studies were run; {_runs(len(summary.canceled_runs))} canceled, the rest not started"
        )
    lines.append(f"time:             {summary.seconds:.1f} s")
    return "\n".join(lines)


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")
