"""The template's landmark file: which landmarks a person placed on the template image."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

VALID_KINDS = ("vertebra", "disc")

#: The name of the template pair directly in ``template/`` (the ``template`` column's value).
DEFAULT_TEMPLATE = "default"
TEMPLATE_IMAGE = "template.dcm"
TEMPLATE_LANDMARKS = "landmarks.json"
# A template's name is its folder's name; it becomes a column value and a folder name again.
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TemplateError(ValueError):
    """The template's landmark file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class TemplateLandmark:
    """One labelled landmark: ``x`` = column, ``y`` = row, in pixels of the template image."""

    name: str
    kind: str
    x: float
    y: float


@dataclass(frozen=True)
class TemplateLandmarks:
    region: str
    landmarks: tuple[TemplateLandmark, ...]

    def names(self) -> list[str]:
        return [lm.name for lm in self.landmarks]

    def by_name(self) -> dict[str, TemplateLandmark]:
        return {lm.name: lm for lm in self.landmarks}


def parse_template_landmarks(document: dict) -> TemplateLandmarks:
    """Validate a landmarks document (the CONTRACT's ``landmarks.json`` format)."""
    if not isinstance(document, dict):
        raise TemplateError("landmarks.json must hold a JSON object")
    region = document.get("region")
    if not isinstance(region, str) or not region:
        raise TemplateError("landmarks.json needs a 'region' string, e.g. \"lumbar\"")
    entries = document.get("landmarks")
    if not isinstance(entries, list) or not entries:
        raise TemplateError("landmarks.json needs a non-empty 'landmarks' list")
    landmarks: list[TemplateLandmark] = []
    for index, entry in enumerate(entries):
        try:
            name, kind = str(entry["name"]), str(entry["kind"])
            x, y = float(entry["x"]), float(entry["y"])
        except (KeyError, TypeError, ValueError) as error:
            raise TemplateError(
                f"landmark #{index} needs name, kind, x and y (numbers): {entry!r}"
            ) from error
        if kind not in VALID_KINDS:
            raise TemplateError(
                f"landmark {name!r} has kind {kind!r}; expected one of {VALID_KINDS}"
            )
        landmarks.append(TemplateLandmark(name=name, kind=kind, x=x, y=y))
    names = [lm.name for lm in landmarks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TemplateError(f"landmarks.json names these landmarks twice: {duplicates}")
    return TemplateLandmarks(region=region, landmarks=tuple(landmarks))


def load_template_landmarks(path: Path) -> TemplateLandmarks:
    """Read and validate ``landmarks.json``."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise TemplateError(f"template landmarks not found: {path}") from error
    except json.JSONDecodeError as error:
        raise TemplateError(f"template landmarks are not valid JSON ({path}): {error}") from error
    return parse_template_landmarks(document)


@dataclass(frozen=True)
class TemplateFiles:
    """Where one template's image and landmark file are; ``name`` is what the label dataset's
    ``template`` column records (``default`` for the pair directly in ``template/``)."""

    name: str
    image: Path
    landmarks: Path


def template_files(template_dir: Path) -> TemplateFiles:
    """The template pair directly in ``template_dir`` (``template.dcm``, ``landmarks.json``)."""
    return TemplateFiles(
        DEFAULT_TEMPLATE,
        Path(template_dir) / TEMPLATE_IMAGE,
        Path(template_dir) / TEMPLATE_LANDMARKS,
    )


def named_template_files(
    parent_dir: Path, prefix: str = ""
) -> tuple[list[TemplateFiles], list[str]]:
    """The templates in the sub-folders ``<parent_dir>/<name>/{template.dcm,landmarks.json}``,
    by name, each named ``prefix + name``; and, in words, the sub-folders that are not usable
    (a file missing, a name that cannot be a template's). Hidden folders are skipped silently
    (temporary files of interrupted writes)."""
    parent_dir = Path(parent_dir)
    found: list[TemplateFiles] = []
    problems: list[str] = []
    if not parent_dir.is_dir():
        return found, problems
    for folder in sorted(p for p in parent_dir.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        if not _TEMPLATE_NAME.match(folder.name) or folder.name == DEFAULT_TEMPLATE:
            problems.append(
                f"{folder.name!r}: not a template name (letters, digits, '_', '.', '-'; "
                f"not {DEFAULT_TEMPLATE!r})"
            )
            continue
        files = TemplateFiles(
            prefix + folder.name, folder / TEMPLATE_IMAGE, folder / TEMPLATE_LANDMARKS
        )
        missing = [p.name for p in (files.image, files.landmarks) if not p.is_file()]
        if missing:
            problems.append(f"{folder.name!r}: no {' and no '.join(missing)}")
            continue
        found.append(files)
    return found, problems
