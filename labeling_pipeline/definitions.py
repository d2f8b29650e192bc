"""The Dagster code location: every asset, check, job, sensor, schedule and resource defined
under ``labeling_pipeline/defs/`` (one folder per stage, in the order data flows)."""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
