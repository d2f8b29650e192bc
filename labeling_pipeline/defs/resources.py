"""Dagster resources shared by every stage: settings, the feature extractor, the IO manager.

Settings left unset (``None``) are read from the environment when a run starts, so the command
line (``labeling-pipeline run --data-dir ...`` sets the variables) and runs launched from the
UI, a sensor or a schedule all see the same ``LABELING_*`` variables (README "Configuration").
"""

from __future__ import annotations

import functools
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from labeling_pipeline.atomic import atomic_write, sweep_interrupted_writes
from labeling_pipeline.defs.settings import (
    CONTEXT_ENV,
    DEFAULT_FEATURE_MODEL,
    FEATURE_MODEL_ENV,
    FEATURE_WEIGHTS_ENV,
    STRATEGY_ENV,
    PipelinePaths,
    resolve_setting,
)
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.locks import (
    OutputDirectoryLock,
    ProcessIdentity,
    exclusive_lock,
    partition_lock_path,
    shared_lock_path,
)

if TYPE_CHECKING:
    # torch comes with the extractors: imported when a run first needs the model, not when
    # the definitions load (the code server and the daemon never need it; ~1 GB per process).
    from labeling_pipeline.features.extractors import FeatureExtractor
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

    _held: list[Any] = PrivateAttr(default_factory=list)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """For the whole run: record this process in the run's tags; register as a user of
        the output directory (refused when another live process uses it for other inputs);
        hold the run's writer lock: its study partition's, or the shared files' (catalog,
        template reference) for an unpartitioned run; sweep what interrupted writes of dead
        processes left behind."""
        from labeling_pipeline.defs.runs import process_tags

        run = context.run
        if run is None or context.instance is None:
            return
        context.instance.add_run_tags(run.run_id, process_tags())
        paths = self.paths()
        holder = OutputDirectoryLock(paths.output_dir, paths.inputs_digest())
        holder.acquire()
        self._held.append(holder)
        partitions = _run_partitions(context.instance, run.tags)
        lock_paths = (
            [partition_lock_path(paths.output_dir, key) for key in sorted(partitions)]
            if partitions
            else [shared_lock_path(paths.output_dir)]
        )
        log = context.log

        def waiting() -> None:
            if log is not None:
                log.info("waiting for another run that writes the same outputs")

        for lock_path in lock_paths:  # sorted: two runs never wait for each other in a circle
            writer = exclusive_lock(lock_path, on_wait=waiting)
            writer.__enter__()
            self._held.append(writer)
        sweep_interrupted_writes(
            paths.output_dir,
            writer_alive=lambda pid: ProcessIdentity(
                pid, holder.identity.host, None, ""
            ).is_alive(),
            sweep_unowned=not holder.others_alive(),
        )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        while self._held:
            held = self._held.pop()
            if isinstance(held, OutputDirectoryLock):
                held.release()
            else:
                held.__exit__(None, None, None)

    def paths(self) -> PipelinePaths:
        """Absolute input and output locations for this run."""
        return PipelinePaths.resolve(self.data_dir, self.output_dir)

    def strategy(self) -> str | None:
        """The localization strategy name, or ``None`` for the library default."""
        return resolve_setting(self.localization_strategy, STRATEGY_ENV, None)

    def reference_settings(self) -> ReferenceSettings:
        """How template references are built (context size from config or environment)."""
        from labeling_pipeline.localization.reference import ReferenceSettings

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


def _run_partitions(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[str]:
    """The study partitions a run writes: its partition, or every key of its range."""
    from labeling_pipeline.defs.ingestion.partitions import STUDIES_PARTITION_NAME

    if tags.get("dagster/partition"):
        return [tags["dagster/partition"]]
    start = tags.get("dagster/asset_partition_range_start")
    end = tags.get("dagster/asset_partition_range_end")
    if not (start and end):
        return []
    keys = list(instance.get_dynamic_partitions(STUDIES_PARTITION_NAME))
    if start not in keys or end not in keys:
        return [start, end]
    return keys[keys.index(start) : keys.index(end) + 1]


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
    from labeling_pipeline.features.extractors import load_extractor

    return load_extractor(model=model, weights=weights)


class IntermediateIOManager(dg.ConfigurableIOManager):
    """Pickles values passed between assets under ``<output dir>/.dagster_io/``.

    One file per asset, partition and run (``<asset key>/<partition or __all__>/<run id>.pkl``),
    written atomically. A run reads the value that it made itself, else the one its tags pin
    (``labeling/input_run/<asset>``: ``labeling-pipeline run`` pins its catalog-and-template
    run), else the one of the asset's latest materialization in the instance. So two runs
    that share an output directory never read each other's values by accident, and a failed
    run never leaves half a value behind. Values hold no file paths (catalog row keys only).
    Files of older runs are removed once they are a day old and two newer ones exist.
    """

    pipeline: PipelineResource

    def _directory(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        base = self.pipeline.paths().intermediate_dir.joinpath(*asset_key.path)
        return base / (partition if partition is not None else "__all__")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        directory = self._directory(context.asset_key, partition)
        path = directory / f"{context.run_id}.pkl"
        atomic_write(
            path,
            lambda temporary: temporary.write_bytes(
                pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            ),
        )
        _remove_old_values(directory, keep=path)
        context.add_output_metadata({"stored_for_run": context.run_id})

    def _source_run(self, context: dg.InputContext, partition: str | None) -> str | None:
        asset_key = context.asset_key
        upstream = context.upstream_output
        upstream_run = _optional(lambda: upstream.run_id) if upstream is not None else None
        if (
            upstream_run
            and (self._directory(asset_key, partition) / f"{upstream_run}.pkl").is_file()
        ):
            return upstream_run  # made earlier in this run
        run = _optional(lambda: context.step_context.dagster_run)
        pinned = run.tags.get(pinned_input_tag(asset_key)) if run is not None else None
        if pinned:
            return pinned
        instance = _optional(lambda: context.instance)
        if instance is None:
            return None
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=asset_key, asset_partitions=[partition] if partition else None
            ),
            limit=1,
        ).records
        return records[0].run_id if records else None

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
        what = context.asset_key.to_user_string() + (f" [{partition}]" if partition else "")
        run_id = self._source_run(context, partition)
        path = self._directory(context.asset_key, partition) / f"{run_id}.pkl"
        if run_id is None or not path.is_file():
            raise dg.Failure(
                f"{what} has not been materialized for this output directory (no value of run "
                f"{run_id}); materialize it first"
            )
        try:
            with path.open("rb") as stream:
                return pickle.load(stream)
        except (AttributeError, ImportError, pickle.UnpicklingError, EOFError) as error:
            # e.g. written by a version of the pipeline whose types lived in other modules
            raise dg.Failure(
                f"{what} of run {run_id} cannot be read by this version of the pipeline "
                f"({type(error).__name__}: {error}); materialize it again"
            ) from error


def _optional(get: Any) -> Any:
    # Contexts built outside a run (tests, direct calls) lack some parts.
    try:
        return get()
    except (dg.DagsterInvariantViolationError, AttributeError, TypeError):
        return None


def pinned_input_tag(asset_key: dg.AssetKey) -> str:
    """The run tag that pins which run's value of ``asset_key`` a run reads."""
    return f"labeling/input_run/{asset_key.to_user_string()}"


_OLD_VALUE_AGE_S = 24 * 3600.0


def _remove_old_values(directory: Path, keep: Path, newer_kept: int = 2) -> None:
    # Values of older runs: a pinned run may still read one shortly, so only day-old ones
    # beyond the newest few go.
    values = sorted(directory.glob("*.pkl"), key=_mtime, reverse=True)
    now = time.time()
    for path in values[newer_kept + 1 :]:
        if path != keep and now - _mtime(path) > _OLD_VALUE_AGE_S:
            path.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class CatalogIOManager(dg.ConfigurableIOManager):
    """The catalog's value is a file already: ``catalog.parquet``, which ``dicom_catalog``
    writes (the one place with input paths). Nothing is pickled; readers read that file."""

    pipeline: PipelineResource

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        path = self.pipeline.paths().catalog_path
        if not path.is_file():
            raise dg.Failure("dicom_catalog returned without writing catalog.parquet")

    def load_input(self, context: dg.InputContext) -> Any:
        path = self.pipeline.paths().catalog_path
        if not path.is_file():
            raise dg.Failure(
                "dicom_catalog has not been materialized for this output directory "
                "(catalog.parquet is missing); materialize it first"
            )
        return read_catalog(path)


@dg.definitions
def resources() -> dg.Definitions:
    """The resources every asset, sensor and schedule of this code location uses."""
    pipeline = PipelineResource()
    return dg.Definitions(
        # Every run of this code location (UI materializations and backfills run the implicit
        # asset job) executes its steps in its own process, one after another: a process per
        # step cost 10-20 s of imports (torch, Dagster) each on 2 cores against ~70 ms of work
        # per image; a batch's steps run in sequence anyway.
        executor=dg.in_process_executor,
        resources={
            "pipeline": pipeline,
            "feature_model": FeatureModelResource(),
            "io_manager": IntermediateIOManager(pipeline=pipeline),
            "catalog_io_manager": CatalogIOManager(pipeline=pipeline),
        },
    )
