"""Build the bundled sample data (``data/``) and larger generated test sets.

Layout written under the output directory (see ``data/README.md``):

- ``template/template.dcm`` + ``template/landmarks.json`` (CONTRACT format: L1-L5, S1 and the
  discs L1-L2 ... L5-S1, x = column, y = row in pixels);
- ``incoming/`` (and for the sample data ``archive/``): DICOM studies in nested folders, as
  single-frame images, 5-slice sagittal series and 5-frame multi-frame files;
- the truth file (``sample_truth.json`` / ``truth.json``), keyed by the SOPInstanceUID of the
  image each study's truth is drawn on, its mid-sagittal plane (a series' middle slice, a
  multi-frame file's SOP with its middle ``frame``). The pipeline labels a series on its most
  mid-sagittal central slice, which may be another slice of the series: match by ``series_uid``
  (:func:`labeling_pipeline.localization.evaluation.match_truth_by_series`). Entries:
  ``{"file": <path relative to the output dir>, "spacing": <row spacing mm>,
  "pixel_spacing_mm": [row, col], "layout": ..., "frame": ..., "study_uid": ...,
  "series_uid": ..., "landmarks": {"L1": {"x": .., "y": .., "kind": "vertebra"}, ...}}``.

Everything is deterministic: re-running gives byte-identical files. Only the files listed here
are written; other files in the output directory are left alone.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from labeling_pipeline.atomic import atomic_write
from labeling_pipeline.synthetic.dicom_writer import (
    StudyInfo,
    WrittenImage,
    write_multiframe,
    write_series,
    write_single_frame,
)
from labeling_pipeline.synthetic.families import family_overrides
from labeling_pipeline.synthetic.params import PhantomParams, random_params
from labeling_pipeline.synthetic.phantom import Phantom, make_phantom, make_slices

LAYOUTS = ("single", "series", "multiframe")
TEMPLATE_LANDMARKS = (
    "L1", "L2", "L3", "L4", "L5", "S1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1",
)  # fmt: skip
#: Name of the deliberately broken file in the sample data's incoming folder.
BROKEN_FILE = "incoming/site_a/2026-09-02/study_0007/IM0001.dcm"


@dataclass(frozen=True)
class CaseSpec:
    """One study to write: where (``relpath``, a file for single/multiframe, a folder for a
    series, relative to the output dir), how (``layout``), who (``study``) and what (``params``).
    """

    relpath: str
    layout: str
    study: StudyInfo
    params: PhantomParams
    slices: int = 5
    slice_spacing_mm: float = 4.0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}: {self.layout!r}")
        if self.layout != "single" and self.slices % 2 == 0:
            raise ValueError("use an odd number of slices so the middle one is unambiguous")


def write_json(path: Path, document: Any) -> None:
    """Write ``document`` as indented JSON, atomically."""
    text = json.dumps(document, indent=1) + "\n"
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _landmark_doc(phantom: Phantom) -> dict[str, dict[str, Any]]:
    return {
        name: {"x": round(x, 4), "y": round(y, 4), "kind": kind}
        for name, (x, y, kind) in phantom.landmarks.items()
    }


def write_case(spec: CaseSpec, out_dir: Path) -> tuple[str, dict[str, Any]]:
    """Render and write one study; returns (SOPInstanceUID of the labelled image, truth entry)."""
    out_dir = Path(out_dir)
    target = out_dir / spec.relpath
    if spec.layout == "single":
        phantom = make_phantom(spec.params)
        labelled: WrittenImage = write_single_frame(phantom, target, spec.study)
    else:
        stack = make_slices(spec.params, spec.slices, spec.slice_spacing_mm)
        phantom = stack[spec.slices // 2]
        if spec.layout == "series":
            written = write_series(stack, target, spec.study, spec.slice_spacing_mm)
            labelled = written[spec.slices // 2]
        else:
            labelled = write_multiframe(stack, target, spec.study, spec.slice_spacing_mm)
    entry = {
        "file": labelled.path.relative_to(out_dir).as_posix(),
        "spacing": phantom.pixel_spacing_mm[0],
        "pixel_spacing_mm": list(phantom.pixel_spacing_mm),
        "layout": spec.layout,
        "frame": labelled.labelled_frame,
        "study_uid": labelled.study_uid,
        "series_uid": labelled.series_uid,
        "landmarks": _landmark_doc(phantom),
    }
    return labelled.sop_instance_uid, entry


def write_template(params: PhantomParams, template_dir: Path, study: StudyInfo) -> Phantom:
    """Write ``template.dcm`` and ``landmarks.json`` (L1-L5, S1, discs L1-L2 ... L5-S1)."""
    phantom = make_phantom(params)
    absent = [name for name in TEMPLATE_LANDMARKS if name not in phantom.landmarks]
    if absent:
        raise ValueError(f"template field of view misses {absent}; adjust its params")
    write_single_frame(phantom, Path(template_dir) / "template.dcm", study)
    landmarks = []
    for name in TEMPLATE_LANDMARKS:
        x, y, kind = phantom.landmarks[name]
        landmarks.append({"name": name, "kind": kind, "x": round(x, 3), "y": round(y, 3)})
    write_json(Path(template_dir) / "landmarks.json", {"region": "lumbar", "landmarks": landmarks})
    return phantom


def write_broken_file(path: Path, study: StudyInfo, seed: int) -> None:
    """A DICOM file cut off in the middle of its pixel data (headers readable, pixels not)."""
    params = PhantomParams(seed=seed, rows=128, cols=128, pixel_spacing_mm=(2.0, 2.0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        whole = Path(tmp) / "whole.dcm"
        write_single_frame(make_phantom(params), whole, study)
        data = whole.read_bytes()
    tmp_path = path.with_name(f".{path.name}.tmp")
    tmp_path.write_bytes(data[: int(len(data) * 0.6)])
    os.replace(tmp_path, path)


def template_params(seed: int, rows: int = 256, spacing_mm: float = 1.0) -> PhantomParams:
    """A typical, well-centred template: average lordosis, no tilt, L1..S1 in view."""
    return PhantomParams(
        seed=seed,
        rows=rows,
        cols=rows,
        pixel_spacing_mm=(spacing_mm, spacing_mm),
        noise_level=0.02,
        bias_strength=0.08,
    )


def _small_params(rng: np.random.Generator, rows: int, **overrides: Any) -> PhantomParams:
    """Random params on a ``rows`` x ``rows`` grid with a 220-300 mm field of view."""
    spacing = round(float(np.clip(rng.uniform(220.0, 300.0) / rows, 0.6, 1.2)), 4)
    params = random_params(rng, **overrides)
    return replace(params, rows=rows, cols=rows, pixel_spacing_mm=(spacing, spacing))


def _resized(params: PhantomParams, size: int) -> PhantomParams:
    """``params`` on a ``size`` x ``size`` grid covering the same field of view (mm)."""
    fov = max(params.rows * params.pixel_spacing_mm[0], params.cols * params.pixel_spacing_mm[1])
    spacing = round(fov / size, 4)
    return replace(params, rows=size, cols=size, pixel_spacing_mm=(spacing, spacing))


def sample_specs() -> list[CaseSpec]:
    """The studies of the bundled sample data (incoming and archive)."""
    rng = np.random.default_rng(20260901)
    specs: list[CaseSpec] = []

    def study(key: str, number: int, date: str, **kw: Any) -> StudyInfo:
        return StudyInfo(key=f"sample/{key}", case_number=number, study_date=date, **kw)

    # incoming: five new studies in different layouts, two hard cases.
    specs.append(CaseSpec(
        "incoming/site_a/2026-09-01/study_0001/IM0001.dcm", "single",
        study("incoming/0001", 1, "20260901"), _small_params(rng, 256),
    ))  # fmt: skip
    specs.append(CaseSpec(
        "incoming/site_a/2026-09-01/study_0002/IM0001.dcm", "single",
        study("incoming/0002", 2, "20260901"),
        _small_params(rng, 240, strong_curvature=True, tilt_deg=-6.0),
    ))  # fmt: skip
    specs.append(CaseSpec(
        "incoming/site_a/2026-09-02/study_0003/SAG_T2", "series",
        study("incoming/0003", 3, "20260902"), _small_params(rng, 224, lateral_drift_mm=2.0),
    ))  # fmt: skip
    specs.append(CaseSpec(
        "incoming/site_b/20260903/0004/sag_t2_multiframe.dcm", "multiframe",
        study("incoming/0004", 4, "20260903", series_description="SAG T2 MULTIFRAME"),
        _small_params(rng, 224),
    ))  # fmt: skip
    specs.append(CaseSpec(
        "incoming/site_b/20260904/0005/IMG00001", "single",  # no file extension on purpose
        study("incoming/0005", 5, "20260904"), _small_params(rng, 256, missing=("S1",)),
    ))  # fmt: skip
    specs.append(CaseSpec(
        "incoming/site_b/20260904/0006/IM0001.dcm", "single",
        study("incoming/0006", 6, "20260904"),
        _small_params(rng, 240, missing=("L1",), tilt_deg=12.0),
    ))  # fmt: skip

    # archive: six older studies, February to August 2026 (for backfills).
    dates = ["20260210", "20260317", "20260422", "20260526", "20260701", "20260812"]
    for k, date in enumerate(dates):
        number = 101 + k
        overrides: dict[str, Any] = {"tilt_deg": 15.0} if k == 3 else {}
        specs.append(CaseSpec(
            f"archive/{date[:4]}-{date[4:6]}/study_{number:04d}/IM0001.dcm", "single",
            study(f"archive/{number:04d}", number, date),
            _small_params(rng, 224 if k % 2 else 256, **overrides),
        ))  # fmt: skip
    return specs


def build_sample_data(out_dir: Path) -> dict[str, Any]:
    """Write the bundled sample data under ``out_dir``; returns the truth document."""
    out_dir = Path(out_dir)
    write_template(
        template_params(seed=1),
        out_dir / "template",
        StudyInfo(key="sample/template", case_number=0, study_date="20260105"),
    )
    truth: dict[str, Any] = {}
    for spec in sample_specs():
        sop, entry = write_case(spec, out_dir)
        truth[sop] = entry
    write_broken_file(
        out_dir / BROKEN_FILE,
        StudyInfo(key="sample/incoming/0007", case_number=7, study_date="20260902"),
        seed=7,
    )
    write_json(out_dir / "sample_truth.json", truth)
    return truth


def _dataset_overrides(rng: np.random.Generator, hard_fraction: float) -> dict[str, Any]:
    """Overrides for one generated case: a hard case with probability ``hard_fraction``."""
    if rng.random() >= hard_fraction:
        return {}
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return {"strong_curvature": True}
    if kind == 1:
        return {"missing": ("S1",) if rng.random() < 0.5 else ("L1",)}
    if kind == 2:
        return {"tilt_deg": float(rng.choice([-1.0, 1.0]) * rng.uniform(12.0, 20.0))}
    return {"strong_curvature": True, "tilt_deg": float(rng.uniform(-12.0, 12.0))}


def build_dataset(
    out_dir: Path,
    count: int,
    seed: int,
    layouts: tuple[str, ...] = ("single",),
    hard_fraction: float = 0.25,
    slices: int = 5,
    size: int | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    """Write a generated test set: ``template/``, ``incoming/case_NNNN/...``, ``truth.json``.

    Case ``i`` uses ``layouts[i % len(layouts)]`` (series and multi-frame cases have ``slices``
    slices, 4 mm apart) and depends only on ``(seed, i)`` and the options. ``size`` resamples
    every case to ``size`` x ``size`` pixels over the same field of view (smaller, faster test
    sets; spacing may then leave 0.6-1.2 mm). ``family`` draws every case from one hard family
    of :mod:`labeling_pipeline.synthetic.families` instead of the mixed default (then
    ``hard_fraction`` is not used). Returns the truth document.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0: {count}")
    bad = [layout for layout in layouts if layout not in LAYOUTS]
    if bad or not layouts:
        raise ValueError(f"layouts must be a non-empty subset of {LAYOUTS}: {layouts}")
    out_dir = Path(out_dir)
    write_template(
        template_params(seed=seed),
        out_dir / "template",
        StudyInfo(key=f"dataset/{seed}/template", case_number=0, study_date="20260105"),
    )
    truth: dict[str, Any] = {}
    for i in range(count):
        rng = np.random.default_rng([seed, i, 7])
        layout = layouts[i % len(layouts)]
        overrides = (
            family_overrides(family, rng)
            if family is not None
            else _dataset_overrides(rng, hard_fraction)
        )
        params = random_params(rng, **overrides)
        if size is not None:
            params = _resized(params, size)
        folder = f"incoming/case_{i:04d}"
        relpath = {
            "single": f"{folder}/IM0001.dcm",
            "series": f"{folder}/SAG_T2",
            "multiframe": f"{folder}/multiframe.dcm",
        }[layout]
        day = 1 + i % 28
        study = StudyInfo(
            key=f"dataset/{seed}/{i}", case_number=i + 1, study_date=f"202609{day:02d}"
        )
        sop, entry = write_case(CaseSpec(relpath, layout, study, params, slices), out_dir)
        truth[sop] = entry
    write_json(out_dir / "truth.json", truth)
    return truth
