"""Localization accuracy per strategy and data set.

Data sets:
- ``real``: the real lumbar MRI in ``../shared/realdata/lumbar_mri_dev`` with its own template.
- ``real-cross`` (``--cross-template``): every real case in turn as the template (its discs
  placed midway between its vertebrae), all others as targets: 90 image pairs instead of 9.
- ``synthetic``: generated phantoms (``labeling_pipeline.synthetic``) with exact truth,
  including hard cases (strong curvature, tilt, vertebrae out of view).

Prints a table (share identified, share needs_review, share confidently wrong, mean error in
mm, ms per image for the search alone) and writes it as markdown.

    .venv/bin/python benchmarks/accuracy.py [--synthetic-count 40] [--cross-template]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.evaluation import Summary, score_image, summarize
from labeling_pipeline.localization.reference import ReferenceSettings, build_template_reference
from labeling_pipeline.localization.search import STRATEGIES, SearchSettings, localize
from labeling_pipeline.localization.template import (
    TemplateLandmarks,
    load_template_landmarks,
    parse_template_landmarks,
)
from labeling_pipeline.synthetic.sample_data import build_dataset

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = REPO.parent / "shared" / "realdata" / "lumbar_mri_dev"


@dataclass
class Case:
    key: str
    image: LabelImage
    truth: dict[str, tuple[float, float]]  # vertebrae only, pixels


@dataclass
class DataSet:
    name: str
    template_image: LabelImage
    template: TemplateLandmarks
    cases: list[Case]


def load_truth_dir(name: str, root: Path, template_dir: Path) -> DataSet:
    """A directory with ``truth.json`` (the realdata format) and a template folder."""
    truth = json.loads((root / "truth.json").read_text())
    cases = []
    for entry in truth.values():
        image = read_label_image(root / entry["file"], entry.get("frame"))
        vertebrae = {
            n: (p["x"], p["y"]) for n, p in entry["landmarks"].items() if p["kind"] == "vertebra"
        }
        cases.append(Case(entry["file"], image, vertebrae))
    return DataSet(
        name,
        read_label_image(template_dir / "template.dcm"),
        load_template_landmarks(template_dir / "landmarks.json"),
        cases,
    )


def cross_templates(real: DataSet) -> list[DataSet]:
    """Each real case as the template, labelled like the shipped one (discs midway)."""
    sets = []
    everyone = [*real.cases, Case("template", real.template_image, _vertebrae_of(real.template))]
    for chosen in everyone:
        names = sorted(chosen.truth, key=lambda n: chosen.truth[n][1])
        landmarks = [
            {"name": n, "kind": "vertebra", "x": chosen.truth[n][0], "y": chosen.truth[n][1]}
            for n in names
        ]
        for upper, lower in zip(names, names[1:], strict=False):
            (ux, uy), (lx, ly) = chosen.truth[upper], chosen.truth[lower]
            landmarks.append(
                {"name": f"{upper}-{lower}", "kind": "disc", "x": (ux + lx) / 2, "y": (uy + ly) / 2}
            )
        template = parse_template_landmarks(
            {"region": real.template.region, "landmarks": landmarks}
        )
        others = [c for c in everyone if c is not chosen]
        sets.append(DataSet("real-cross", chosen.image, template, others))
    return sets


def _vertebrae_of(template: TemplateLandmarks) -> dict[str, tuple[float, float]]:
    return {lm.name: (lm.x, lm.y) for lm in template.landmarks if lm.kind == "vertebra"}


class FeatureCache:
    """Features of each image computed once per run (keyed by object identity)."""

    def __init__(
        self,
        model: str,
        weights: str | None,
        preparation: PreparationSettings,
        layers: tuple[int, ...] | None = None,
    ):
        self.extractor = load_extractor(model, weights, layers=layers)
        self.preparation = preparation
        self._maps: dict[int, FeatureMap] = {}

    def get(self, image: LabelImage) -> FeatureMap:
        if id(image) not in self._maps:
            self._maps[id(image)] = compute_feature_maps([image], self.extractor, self.preparation)[
                0
            ]
        return self._maps[id(image)]


def evaluate(
    sets: list[DataSet],
    cache: FeatureCache,
    reference_settings: ReferenceSettings,
    search_settings: SearchSettings,
) -> tuple[Summary, float]:
    outcomes, seconds, images = [], 0.0, 0
    for data in sets:
        domain = load_domain(data.template.region)
        reference = build_template_reference(
            cache.get(data.template_image), data.template, domain, reference_settings
        )
        for case in data.cases:
            fmap = cache.get(case.image)
            start = time.perf_counter()
            results = localize(fmap, reference, domain, search_settings)
            seconds += time.perf_counter() - start
            images += 1
            outcomes += score_image(case.key, results, case.truth, case.image.pixel_spacing_mm)
    return summarize(outcomes), 1000 * seconds / max(images, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--synthetic-count", type=int, default=40)
    parser.add_argument("--synthetic-seed", type=int, default=2026)
    parser.add_argument("--cross-template", action="store_true")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--layers", default=None, help="feature layers, e.g. 1,2,3,4")
    parser.add_argument(
        "--reference-settings", type=json.loads, default={}, help='JSON, e.g. {"context_mm": 32}'
    )
    parser.add_argument(
        "--search-settings", type=json.loads, default={}, help='JSON, e.g. {"candidates": 6}'
    )
    parser.add_argument("--mm-per-pixel", type=float, default=PreparationSettings().mm_per_pixel)
    parser.add_argument(
        "--markdown", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.md"
    )
    args = parser.parse_args(argv)

    layers = tuple(int(v) for v in args.layers.split(",")) if args.layers else None
    preparation = PreparationSettings(mm_per_pixel=args.mm_per_pixel)
    cache = FeatureCache(args.model, args.weights, preparation, layers)
    groups: dict[str, list[DataSet]] = {}
    if REAL_DIR.is_dir():
        real = load_truth_dir("real", REAL_DIR, REAL_DIR / "template")
        groups["real"] = [real]
        if args.cross_template:
            groups["real-cross"] = cross_templates(real)
    else:
        print(f"note: {REAL_DIR} is absent; real-data rows are skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_count > 0:
            build_dataset(Path(tmp), args.synthetic_count, args.synthetic_seed)
            groups["synthetic"] = [load_truth_dir("synthetic", Path(tmp), Path(tmp) / "template")]
        header = (
            "| strategy | data set | vertebrae | identified | needs_review | confidently wrong "
            "| ok but absent | mean error (mm) | search ms/image |"
        )
        lines = [header, "|" + "---|" * 9]
        print(header)
        for strategy in args.strategies.split(","):
            for name, sets in groups.items():
                search = SearchSettings(**{**args.search_settings, "strategy": strategy})
                summary, ms = evaluate(
                    sets, cache, ReferenceSettings(**args.reference_settings), search
                )
                line = (
                    f"| {strategy} | {name} | {summary.vertebrae} | {summary.identified:.1%} "
                    f"| {summary.needs_review:.1%} | {summary.confidently_wrong:.1%} "
                    f"| {summary.ok_but_absent} | {summary.mean_error_mm:.2f} | {ms:.1f} |"
                )
                print(line, flush=True)
                lines.append(line)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    model_line = (
        f"Feature model: `{args.model}` (layers {args.layers or 'default'}); synthetic: "
        f"{args.synthetic_count} cases, seed {args.synthetic_seed}; reference settings "
        f"{args.reference_settings}, search settings {args.search_settings}."
    )
    args.markdown.write_text(
        "# Localization accuracy\n\n" + model_line + "\n\n" + "\n".join(lines) + "\n"
    )
    print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
