"""Where the pipeline reads and writes: the ``LABELING_*`` environment variables (README
"Configuration"), resolved once.

Kept free of Dagster so that the command line and the Dagster resources share one reading of
``LABELING_DATA_DIR`` / ``LABELING_OUTPUT_DIR`` and one layout of the output directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "LABELING_DATA_DIR"
OUTPUT_DIR_ENV = "LABELING_OUTPUT_DIR"
FEATURE_MODEL_ENV = "LABELING_FEATURE_MODEL"
FEATURE_WEIGHTS_ENV = "LABELING_FEATURE_WEIGHTS"
STRATEGY_ENV = "LABELING_LOCALIZATION_STRATEGY"
CONTEXT_ENV = "LABELING_CONTEXT_MM"

DEFAULT_DATA_DIR = "data"
DEFAULT_OUTPUT_DIR = "data/outputs"
DEFAULT_FEATURE_MODEL = "efficientnet-lite0"


def resolve_setting(explicit: str | None, env_var: str, default: str | None) -> str | None:
    """``explicit`` when given (a command-line option, a resource's config), else the
    environment variable when set and not blank, else ``default``."""
    if explicit is not None and str(explicit).strip():
        return str(explicit)
    value = os.environ.get(env_var, "").strip()
    return value or default


@dataclass(frozen=True)
class PipelinePaths:
    """The data directory's inputs and the output directory's products (the layout of README
    "Data directory" and "Outputs").

    Both directories are absolute: relative settings are resolved against the working
    directory at the moment the paths are built.
    """

    data_dir: Path
    output_dir: Path

    @classmethod
    def resolve(cls, data_dir: str | None = None, output_dir: str | None = None) -> PipelinePaths:
        """Paths from explicit values, else the environment, else the defaults (``data``,
        ``data/outputs``)."""
        data = resolve_setting(data_dir, DATA_DIR_ENV, DEFAULT_DATA_DIR)
        output = resolve_setting(output_dir, OUTPUT_DIR_ENV, DEFAULT_OUTPUT_DIR)
        return cls(Path(str(data)).expanduser().resolve(), Path(str(output)).expanduser().resolve())

    # Inputs -------------------------------------------------------------------------------
    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def template_image(self) -> Path:
        return self.data_dir / "template" / "template.dcm"

    @property
    def template_landmarks(self) -> Path:
        return self.data_dir / "template" / "landmarks.json"

    @property
    def domain_dir(self) -> Path:
        return self.data_dir / "domain"

    # Outputs ------------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.output_dir / "catalog.parquet"

    @property
    def features_path(self) -> Path:
        return self.output_dir / "features.zarr"

    @property
    def labels_dir(self) -> Path:
        return self.output_dir / "labels"

    @property
    def overlays_dir(self) -> Path:
        return self.output_dir / "overlays"

    @property
    def corrections_dir(self) -> Path:
        """Review decisions, append-only (written by the review app)."""
        return self.output_dir / "corrections"

    @property
    def curated_dir(self) -> Path:
        return self.output_dir / "curated"

    @property
    def sr_dir(self) -> Path:
        return self.output_dir / "sr"

    @property
    def qa_dir(self) -> Path:
        return self.output_dir / "qa"

    @property
    def coco_path(self) -> Path:
        return self.output_dir / "coco" / "keypoints.json"

    @property
    def intermediate_dir(self) -> Path:
        """Values passed between assets (pickles written by the IO manager)."""
        return self.output_dir / ".dagster_io"
