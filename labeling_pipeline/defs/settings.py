"""Where the pipeline reads and writes: the ``LABELING_*`` environment variables (README
"Configuration"), resolved once.

Kept free of Dagster so that the command line and the Dagster resources share one reading of
``LABELING_DATA_DIR`` / ``LABELING_OUTPUT_DIR`` and one layout of the output directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from labeling_pipeline.imaging.dicom.limits import ImageLimits

DATA_DIR_ENV = "LABELING_DATA_DIR"
OUTPUT_DIR_ENV = "LABELING_OUTPUT_DIR"
FEATURE_MODEL_ENV = "LABELING_FEATURE_MODEL"
FEATURE_WEIGHTS_ENV = "LABELING_FEATURE_WEIGHTS"
STRATEGY_ENV = "LABELING_LOCALIZATION_STRATEGY"
CONTEXT_ENV = "LABELING_CONTEXT_MM"
PIXEL_SPACING_ENV = "LABELING_PIXEL_SPACING_MM"
MAX_IMAGE_PIXELS_ENV = "LABELING_MAX_IMAGE_PIXELS"
MAX_FIELD_OF_VIEW_ENV = "LABELING_MAX_FIELD_OF_VIEW_MM"
REQUIRE_SAGITTAL_ENV = "LABELING_REQUIRE_SAGITTAL"

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


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None


def image_limits_from_environment() -> ImageLimits:
    """The bounds images must keep (:class:`ImageLimits`), from ``LABELING_PIXEL_SPACING_MM``
    (``min-max``, default ``0.1-5``), ``LABELING_MAX_IMAGE_PIXELS`` (per frame, default
    4096 x 4096), ``LABELING_MAX_FIELD_OF_VIEW_MM`` (default 1000) and
    ``LABELING_REQUIRE_SAGITTAL`` (``1`` default, ``0`` to label other planes too).
    Raises ``ValueError`` naming the variable when one is malformed."""
    defaults = ImageLimits()
    values: dict[str, object] = {}
    spacing = resolve_setting(None, PIXEL_SPACING_ENV, None)
    if spacing is not None:
        low, separator, high = spacing.partition("-")
        if not separator:
            raise ValueError(f"{PIXEL_SPACING_ENV} must be 'min-max' in mm, got {spacing!r}")
        values["min_pixel_spacing_mm"] = _number(PIXEL_SPACING_ENV, low)
        values["max_pixel_spacing_mm"] = _number(PIXEL_SPACING_ENV, high)
    pixels = resolve_setting(None, MAX_IMAGE_PIXELS_ENV, None)
    if pixels is not None:
        values["max_pixels"] = int(_number(MAX_IMAGE_PIXELS_ENV, pixels))
    view = resolve_setting(None, MAX_FIELD_OF_VIEW_ENV, None)
    if view is not None:
        values["max_field_of_view_mm"] = _number(MAX_FIELD_OF_VIEW_ENV, view)
    sagittal = resolve_setting(None, REQUIRE_SAGITTAL_ENV, None)
    if sagittal is not None:
        if sagittal.lower() not in ("0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"{REQUIRE_SAGITTAL_ENV} must be 1 or 0, got {sagittal!r}")
        values["require_sagittal"] = sagittal.lower() in ("1", "true", "yes")
    try:
        return ImageLimits(**{**defaults.__dict__, **values})
    except ValueError as error:
        raise ValueError(f"image limits from the environment: {error}") from None


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

    def inputs_digest(self) -> str:
        """A digest of what the outputs are made from: the data directory and the templates
        (image and landmarks, the default's and those of ``template/<name>/``). Runs that share
        an output directory must agree on it. The review bank (``template_bank/``) is not part
        of it: it grows while runs use the directory."""
        digest = hashlib.sha256(str(self.data_dir).encode("utf-8"))
        for path in self.template_files():
            digest.update(b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<missing>")
        return digest.hexdigest()

    def template_version(self, *settings: object) -> str:
        """A version of what the template reference is made from: the templates' images and
        landmarks (default and ``template/<name>/``), every file of ``domain/`` (the domain
        knowledge; none: the packaged one, whose version goes with the code version) and
        ``settings`` (feature model, weights, reference settings). It changes exactly when the
        reference may change."""
        digest = hashlib.sha256()
        files = self.template_files()
        if self.domain_dir.is_dir():
            files += sorted(p for p in self.domain_dir.rglob("*") if p.is_file())
        for path in files:
            # A named template's files by folder and name (the default's and domain/'s by name,
            # as before there were named templates: their version stays the same).
            named = path.parent.parent == self.template_dir
            name = f"{path.parent.name}/{path.name}" if named else path.name
            digest.update(name.encode("utf-8") + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<missing>")
        digest.update(repr(settings).encode("utf-8"))
        return digest.hexdigest()[:24]

    def data_dir_digest(self) -> str:
        """A digest standing in for the data directory's path in run metadata (no paths there)."""
        return hashlib.sha256(str(self.data_dir).encode("utf-8")).hexdigest()[:16]

    # Inputs -------------------------------------------------------------------------------
    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def template_dir(self) -> Path:
        """The default template pair, and further templates in ``<name>/`` sub-folders."""
        return self.data_dir / "template"

    @property
    def template_image(self) -> Path:
        return self.data_dir / "template" / "template.dcm"

    @property
    def template_landmarks(self) -> Path:
        return self.data_dir / "template" / "landmarks.json"

    @property
    def domain_dir(self) -> Path:
        return self.data_dir / "domain"

    def template_files(self) -> list[Path]:
        """The default template's image and landmarks, then those of every ``template/<name>/``
        sub-folder (by name; hidden folders left out)."""
        files = [self.template_image, self.template_landmarks]
        if self.template_dir.is_dir():
            for folder in sorted(p for p in self.template_dir.iterdir() if p.is_dir()):
                if not folder.name.startswith("."):
                    files += [folder / "template.dcm", folder / "landmarks.json"]
        return files

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
    def template_bank_dir(self) -> Path:
        """Reviewed images as extra templates, ``<name>/{template.dcm,landmarks.json}``
        (written from the review decisions, read when studies are labelled)."""
        return self.output_dir / "template_bank"

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
