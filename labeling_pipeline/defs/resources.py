"""Dagster resources shared by every stage: settings, the feature extractor, the IO manager.

Settings left unset (``None``) are read from the environment when a run starts, so the command
line (``labeling-pipeline run --data-dir ...`` sets the variables) and runs launched from the
UI, a sensor or a schedule all see the same ``LABELING_*`` variables (README "Configuration").
"""

from __future__ import annotations

import functools
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg

from labeling_pipeline.defs.settings import (
    CONTEXT_ENV,
    DEFAULT_FEATURE_MODEL,
    FEATURE_MODEL_ENV,
    FEATURE_WEIGHTS_ENV,
    STRATEGY_ENV,
    PipelinePaths,
    resolve_setting,
)
from labeling_pipeline.features.extractors import FeatureExtractor, load_extractor
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.localization.reference import ReferenceSettings


class PipelineResource(dg.ConfigurableResource):
    """Where the pipeline reads and writes, and which localization strategy it uses.

    ``data_dir`` / ``output_dir``: unset means ``LABELING_DATA_DIR`` (default ``data``) and
    ``LABELING_OUTPUT_DIR`` (default ``data/outputs``). ``localization_strategy``: unset means
    ``LABELING_LOCALIZATION_STRATEGY``, else the localization package's default.
    ``reference_context_mm``: radius (mm) of the template neighbourhood that makes up each
    landmark's reference; unset means ``LABELING_CONTEXT_MM``, else the package default.
    """

    data_dir: str | None = None
    output_dir: str | None = None
    localization_strategy: str | None = None
    reference_context_mm: float | None = None

    def paths(self) -> PipelinePaths:
        """Absolute input and output locations for this run."""
        return PipelinePaths.resolve(self.data_dir, self.output_dir)

    def strategy(self) -> str | None:
        """The localization strategy name, or ``None`` for the library default."""
        return resolve_setting(self.localization_strategy, STRATEGY_ENV, None)

    def reference_settings(self) -> ReferenceSettings:
        """How template references are built (context size from config or environment)."""
        explicit = None if self.reference_context_mm is None else str(self.reference_context_mm)
        value = resolve_setting(explicit, CONTEXT_ENV, None)
        if value is None:
            return ReferenceSettings()
        try:
            context_mm = float(value)
        except ValueError as error:
            raise ValueError(f"{CONTEXT_ENV} must be a number of mm, got {value!r}") from error
        if not context_mm > 0:
            raise ValueError(f"{CONTEXT_ENV} must be positive, got {value!r}")
        return ReferenceSettings(context_mm=context_mm)


class FeatureModelResource(dg.ConfigurableResource):
    """Which pretrained model computes the pixel features (``LABELING_FEATURE_*``, README
    "Configuration").

    ``model``: ``efficientnet-lite0`` (bundled weights) or ``open_clip:<model name>``;
    ``weights``: for open_clip, a pretrained tag or a local checkpoint path.
    """

    model: str | None = None
    weights: str | None = None

    def model_name(self) -> str:
        return str(resolve_setting(self.model, FEATURE_MODEL_ENV, DEFAULT_FEATURE_MODEL))

    def weights_name(self) -> str | None:
        return resolve_setting(self.weights, FEATURE_WEIGHTS_ENV, None)

    def preparation(self) -> PreparationSettings:
        """How images are windowed and resampled before extraction (the features' defaults)."""
        return PreparationSettings()

    def extractor(self) -> FeatureExtractor:
        """The extractor of the configured model, loaded once per process and then reused
        (loading takes seconds; every asset and every run in this process shares it)."""
        return _load_extractor_once(self.model_name(), self.weights_name())


@functools.lru_cache(maxsize=2)
def _load_extractor_once(model: str, weights: str | None) -> FeatureExtractor:
    return load_extractor(model=model, weights=weights)


class IntermediateIOManager(dg.ConfigurableIOManager):
    """Pickles values passed between assets under ``<output dir>/.dagster_io/``.

    One file per asset and partition (``<asset key>/<partition>.pkl``; ``__all__.pkl`` for an
    unpartitioned asset), written to a temporary file then renamed so that a failed run never
    leaves half a value behind. Kept next to the outputs they belong to, so that a run with
    another output directory never reads them.
    """

    pipeline: PipelineResource

    def _path(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        base = self.pipeline.paths().intermediate_dir.joinpath(*asset_key.path)
        return base / f"{partition if partition is not None else '__all__'}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path(context.asset_key, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        context.add_output_metadata({"intermediate_path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        partition: str | None = None
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            if len(keys) != 1:
                # Every partitioned dependency of this graph maps one study to the same study.
                raise dg.Failure(
                    f"{context.asset_key.to_user_string()}: expected one partition, got {keys}"
                )
            partition = keys[0]
        path = self._path(context.asset_key, partition)
        if not path.is_file():
            what = context.asset_key.to_user_string() + (f" [{partition}]" if partition else "")
            raise dg.Failure(
                f"{what} has not been materialized for this output directory ({path} is "
                "missing); materialize it first"
            )
        try:
            with path.open("rb") as stream:
                return pickle.load(stream)
        except (AttributeError, ImportError, pickle.UnpicklingError, EOFError) as error:
            # e.g. written by a version of the pipeline whose types lived in other modules
            what = context.asset_key.to_user_string() + (f" [{partition}]" if partition else "")
            raise dg.Failure(
                f"{what} at {path} cannot be read by this version of the pipeline "
                f"({type(error).__name__}: {error}); materialize it again"
            ) from error


@dg.definitions
def resources() -> dg.Definitions:
    """The resources every asset, sensor and schedule of this code location uses."""
    pipeline = PipelineResource()
    return dg.Definitions(
        resources={
            "pipeline": pipeline,
            "feature_model": FeatureModelResource(),
            "io_manager": IntermediateIOManager(pipeline=pipeline),
        }
    )
