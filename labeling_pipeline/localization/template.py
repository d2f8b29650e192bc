"""The template's landmark file: which landmarks a person placed on the template image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

VALID_KINDS = ("vertebra", "disc")


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
