"""Localization accuracy per strategy and data family.

Data families:
- ``real-dev`` / ``real-ivd``: the two real lumbar MRI sets in ``../shared/realdata``
  (``lumbar_mri_dev``: water-fat MRI, one site; ``lumbar_mri_ivd``: T2 fast spin echo, another
  site and scanner), each with its shipped template.
- ``--cross-template``: every real image in turn as the template (labelled with its truth:
  vertebrae, and discs from the truth or else midway between vertebrae) and every other image
  as a target: ``dev x dev``, ``ivd x ivd``, ``dev -> ivd`` and ``ivd -> dev`` (another site's
  template: the closest thing here to a new hospital's archive).
- ``synthetic``: generated phantoms with exact truth, a mix with hard cases.
- ``--families``: one row per hard family of ``labeling_pipeline.synthetic.families``
  (contrast, field of view, size, pathology, six lumbar vertebrae), from the same template.

Prints a table (counts and shares identified / needs_review / confidently wrong, mean error in
mm, ms per image for the search alone) and writes it as markdown.

    .venv/bin/python benchmarks/accuracy.py [--cross-template] [--families all] [--strategies chain]
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
from labeling_pipeline.features.augment import CONTRAST_VARIANTS, contrast_variants
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.feature_map import FeatureMap
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.evaluation import Outcome, Summary, score_image, summarize
from labeling_pipeline.localization.reference import ReferenceSettings, build_template_reference
from labeling_pipeline.localization.result import flag_outside_image
from labeling_pipeline.localization.search import STRATEGIES, SearchSettings, localize
from labeling_pipeline.localization.template import (
    TemplateLandmarks,
    load_template_landmarks,
    parse_template_landmarks,
)
from labeling_pipeline.synthetic.families import FAMILIES
from labeling_pipeline.synthetic.sample_data import build_dataset

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"
REAL_SETS = {"dev": REALDATA / "lumbar_mri_dev", "ivd": REALDATA / "lumbar_mri_ivd"}


@dataclass
class Case:
    key: str
    image: LabelImage
    truth: dict[str, tuple[float, float]]  # vertebrae only, pixels
    landmarks: dict[str, tuple[float, float, str]]  # every labelled landmark: x, y, kind


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
        marks = {n: (p["x"], p["y"], p["kind"]) for n, p in entry["landmarks"].items()}
        vertebrae = {n: (x, y) for n, (x, y, kind) in marks.items() if kind == "vertebra"}
        cases.append(Case(f"{name}:{entry['file']}", image, vertebrae, marks))
    return DataSet(
        name,
        read_label_image(template_dir / "template.dcm"),
        load_template_landmarks(template_dir / "landmarks.json"),
        cases,
    )


def template_case(data: DataSet) -> Case:
    """The shipped template of a set as a case (so that it can be a target too)."""
    marks = {lm.name: (lm.x, lm.y, lm.kind) for lm in data.template.landmarks}
    vertebrae = {n: (x, y) for n, (x, y, kind) in marks.items() if kind == "vertebra"}
    return Case(f"{data.name}:template", data.template_image, vertebrae, marks)


def as_template(case: Case, region: str) -> TemplateLandmarks:
    """A case labelled like a template: its vertebrae, and its discs where the truth has them,
    else midway between neighbouring vertebrae (as a person would click them)."""
    vertebrae = sorted(case.truth, key=lambda n: case.truth[n][1])
    landmarks = [
        {"name": n, "kind": "vertebra", "x": case.truth[n][0], "y": case.truth[n][1]}
        for n in vertebrae
    ]
    discs = {n: (x, y) for n, (x, y, kind) in case.landmarks.items() if kind == "disc"}
    for upper, lower in zip(vertebrae, vertebrae[1:], strict=False):
        (ux, uy), (lx, ly) = case.truth[upper], case.truth[lower]
        discs.setdefault(f"{upper}-{lower}", ((ux + lx) / 2, (uy + ly) / 2))
    landmarks += [{"name": n, "kind": "disc", "x": x, "y": y} for n, (x, y) in discs.items()]
    return parse_template_landmarks({"region": region, "landmarks": landmarks})


def cross_templates(name: str, sources: list[Case], targets: list[Case], region: str):
    """Each source case as the template for every target case other than itself."""
    return [
        DataSet(
            name,
            chosen.image,
            as_template(chosen, region),
            [c for c in targets if c is not chosen],
        )
        for chosen in sources
    ]


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
        self._variant_maps: dict[tuple[int, tuple[str, ...]], list[FeatureMap]] = {}

    def get(self, image: LabelImage) -> FeatureMap:
        if id(image) not in self._maps:
            self._maps[id(image)] = compute_feature_maps([image], self.extractor, self.preparation)[
                0
            ]
        return self._maps[id(image)]

    def variants(self, image: LabelImage, names: tuple[str, ...]) -> list[FeatureMap]:
        """Features of the contrast variants ``names`` of ``image`` (computed once each)."""
        key = (id(image), names)
        if key not in self._variant_maps:
            self._variant_maps[key] = compute_feature_maps(
                contrast_variants(image, names), self.extractor, self.preparation
            )
        return self._variant_maps[key]


def evaluate(
    sets: list[DataSet],
    cache: FeatureCache,
    reference_settings: ReferenceSettings,
    search_settings: SearchSettings,
    variants: tuple[str, ...] = (),
) -> tuple[list[Outcome], float]:
    outcomes, seconds, images = [], 0.0, 0
    for data in sets:
        domain = load_domain(data.template.region)
        reference = build_template_reference(
            cache.get(data.template_image),
            data.template,
            domain,
            reference_settings,
            cache.variants(data.template_image, variants) if variants else (),
        )
        for case in data.cases:
            fmap = cache.get(case.image)
            start = time.perf_counter()
            results = localize(fmap, reference, domain, search_settings)
            seconds += time.perf_counter() - start
            # As the pipeline does (localization/study.py): nothing ok beyond the image's edge.
            results = flag_outside_image(results, case.image.rows, case.image.columns)
            images += 1
            outcomes += score_image(case.key, results, case.truth, case.image.pixel_spacing_mm)
    return outcomes, 1000 * seconds / max(images, 1)


def row(strategy: str, name: str, summary: Summary, ms: float) -> str:
    n = summary.vertebrae

    def count(share: float) -> str:
        return f"{round(share * n)} ({share:.1%})"

    return (
        f"| {strategy} | {name} | {n} | {count(summary.identified)} "
        f"| {count(summary.needs_review)} | {count(summary.confidently_wrong)} "
        f"| {summary.ok_but_absent} | {summary.mean_error_mm:.2f} | {ms:.1f} |"
    )


def real_groups(cross: bool) -> dict[str, list[DataSet]]:
    groups: dict[str, list[DataSet]] = {}
    loaded = {}
    for key, root in REAL_SETS.items():
        if not root.is_dir():
            print(f"note: {root} is absent; its rows are skipped", file=sys.stderr)
            continue
        loaded[key] = load_truth_dir(f"real-{key}", root, root / "template")
        groups[f"real-{key}"] = [loaded[key]]
    if cross:
        everyone = {k: [*d.cases, template_case(d)] for k, d in loaded.items()}
        for source, data in loaded.items():
            for target in loaded:
                name = f"{source} x {source}" if source == target else f"{source} -> {target}"
                groups[name] = cross_templates(
                    name, everyone[source], everyone[target], data.template.region
                )
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--synthetic-count", type=int, default=40)
    parser.add_argument("--synthetic-seed", type=int, default=2026)
    parser.add_argument("--cross-template", action="store_true")
    parser.add_argument(
        "--families", default="", help=f"'all' or a comma list of {', '.join(FAMILIES)}"
    )
    parser.add_argument("--family-count", type=int, default=12, help="cases per family")
    parser.add_argument(
        "--groups",
        default="",
        help="run only these data families (comma list of row names, e.g. 'dev x dev,ivd -> "
        "dev,synthetic,water'); default all that the other options make",
    )
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--layers", default=None, help="feature layers, e.g. 1,2,3,4")
    parser.add_argument(
        "--reference-settings", type=json.loads, default={}, help='JSON, e.g. {"context_mm": 32}'
    )
    parser.add_argument(
        "--search-settings", type=json.loads, default={}, help='JSON, e.g. {"candidates": 6}'
    )
    parser.add_argument(
        "--contrast-variants",
        default="",
        help=f"template contrast variants averaged into the references, from "
        f"{', '.join(CONTRAST_VARIANTS)} (measured: no gain; default none)",
    )
    parser.add_argument("--mm-per-pixel", type=float, default=PreparationSettings().mm_per_pixel)
    parser.add_argument(
        "--markdown", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.md"
    )
    args = parser.parse_args(argv)

    layers = tuple(int(v) for v in args.layers.split(",")) if args.layers else None
    preparation = PreparationSettings(mm_per_pixel=args.mm_per_pixel)
    cache = FeatureCache(args.model, args.weights, preparation, layers)
    groups = real_groups(args.cross_template)
    variants = tuple(v for v in args.contrast_variants.split(",") if v)
    families = FAMILIES if args.families == "all" else [f for f in args.families.split(",") if f]
    wanted = [g.strip() for g in args.groups.split(",") if g.strip()]
    if wanted:  # build only the synthetic sets that are asked for
        families = [f for f in families if f in wanted]
        if "synthetic" not in wanted:
            args.synthetic_count = 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic_count > 0:
            build_dataset(Path(tmp) / "mixed", args.synthetic_count, args.synthetic_seed)
            groups["synthetic"] = [
                load_truth_dir("synthetic", Path(tmp) / "mixed", Path(tmp) / "mixed" / "template")
            ]
        for family in families:
            root = Path(tmp) / family
            build_dataset(root, args.family_count, args.synthetic_seed, family=family)
            groups[family] = [load_truth_dir(family, root, root / "template")]
        if wanted:
            unknown = [g for g in wanted if g not in groups]
            if unknown:
                parser.error(f"unknown groups {unknown}; these exist: {list(groups)}")
            groups = {name: groups[name] for name in wanted}
        header = (
            "| strategy | data family | vertebrae | identified | needs_review | confidently wrong "
            "| ok but absent | mean error (mm) | search ms/image |"
        )
        lines = [header, "|" + "---|" * 9]
        print(header)
        for strategy in args.strategies.split(","):
            search = SearchSettings(**{**args.search_settings, "strategy": strategy})
            for name, sets in groups.items():
                outcomes, ms = evaluate(
                    sets, cache, ReferenceSettings(**args.reference_settings), search, variants
                )
                line = row(strategy, name, summarize(outcomes), ms)
                print(line, flush=True)
                lines.append(line)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    model_line = (
        f"Feature model: `{args.model}` (layers {args.layers or 'default'}); synthetic: "
        f"{args.synthetic_count} mixed cases and {args.family_count} per family, seed "
        f"{args.synthetic_seed}; template contrast variants {variants or 'none'}; reference "
        f"settings {args.reference_settings}, search settings {args.search_settings}."
    )
    args.markdown.write_text(
        "# Localization accuracy\n\n" + model_line + "\n\n" + "\n".join(lines) + "\n"
    )
    print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
