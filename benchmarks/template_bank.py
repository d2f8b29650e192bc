"""Learning from review: flags and errors before and after reviewed images join the bank.

For each set, every image is labelled with the default template alone; then the first
``--corrected`` images with flagged landmarks are "reviewed" (their truth becomes their
landmarks, as the review bank writes them) and join the bank; the other images are labelled
again with the default template plus that bank (``localization.study.localize_image``: the
bank is tried only where the default leaves landmarks for review). Reported over the images
NOT reviewed: flagged landmarks (vertebrae and discs), identified / confidently wrong
vertebrae (``localization/evaluation.py``), and search milliseconds per image.

Sets: ``fat -> water`` (a fat-image phantom as the default template for the water images of
Dixon phantoms, ``synthetic.families``), and, where ``../shared/realdata`` is present,
``ivd -> dev`` (the real T2 set's template for the real water-fat set: another site). A last
row measures a second template given up front instead of a bank (``template/<name>/``): the
same fat default template plus a water-contrast template, on every water image.

    .venv/bin/python benchmarks/template_bank.py [--cases 24] [--corrected 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import REAL_SETS, Case, DataSet, load_truth_dir  # noqa: E402

from labeling_pipeline.anatomy import load_domain  # noqa: E402
from labeling_pipeline.features.compute import compute_feature_maps  # noqa: E402
from labeling_pipeline.features.extractors import load_extractor  # noqa: E402
from labeling_pipeline.features.preprocess import PreparationSettings  # noqa: E402
from labeling_pipeline.imaging.image import LabelImage  # noqa: E402
from labeling_pipeline.localization.bundle import NamedTemplate, TemplateBundle  # noqa: E402
from labeling_pipeline.localization.evaluation import IDENTIFIED, WRONG, score_image  # noqa: E402
from labeling_pipeline.localization.reference import build_template_reference  # noqa: E402
from labeling_pipeline.localization.search import SearchSettings  # noqa: E402
from labeling_pipeline.localization.study import localize_image  # noqa: E402
from labeling_pipeline.localization.template import parse_template_landmarks  # noqa: E402
from labeling_pipeline.synthetic.families import family_overrides  # noqa: E402
from labeling_pipeline.synthetic.phantom import make_phantom, random_params  # noqa: E402
from labeling_pipeline.synthetic.sample_data import (  # noqa: E402
    TEMPLATE_LANDMARKS,
    template_params,
)


@dataclass
class Totals:
    images: int = 0
    vertebrae: int = 0
    flagged: int = 0
    identified: int = 0
    wrong: int = 0
    search_ms: float = 0.0
    searches: int = 0  # template searches (one per template tried per image)


def _image(pixels: np.ndarray, spacing: tuple[float, float], number: int) -> LabelImage:
    uid = "1.2.826.0.1.3680043.8.498.77"
    return LabelImage(
        uid, uid + ".1", f"{uid}.1.{number}", "", "MR", np.asarray(pixels, np.float32), spacing
    )


def synthetic_set(cases: int) -> DataSet:
    """The ``fat -> water`` set: its template drawn like a fat-family case (own anatomy and
    framing), its cases from the water family (seed 5, as the project's test)."""

    def drawn(family: str, seed: list[int]):
        rng = np.random.default_rng(seed)
        return make_phantom(random_params(rng, **family_overrides(family, rng)))

    template = drawn("fat", [99, 0, 7])
    landmarks = parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": n, "kind": k, "x": x, "y": y}
                for n, (x, y, k) in template.landmarks.items()
                if n in TEMPLATE_LANDMARKS
            ],
        }
    )
    items = []
    for i in range(cases):
        phantom = drawn("water", [5, i, 7])
        marks = dict(phantom.landmarks)
        vertebrae = {n: (x, y) for n, (x, y, k) in marks.items() if k == "vertebra"}
        image = _image(phantom.pixels, phantom.pixel_spacing_mm, i)
        items.append(Case(f"water:{i}", image, vertebrae, marks))
    return DataSet(
        "fat -> water",
        _image(template.pixels, template.pixel_spacing_mm, 999),
        landmarks,
        items,
    )


def reviewed_template(case: Case, names: set[str], region: str):
    """A reviewed image as the bank writes it: its true landmarks among ``names``."""
    return parse_template_landmarks(
        {
            "region": region,
            "landmarks": [
                {"name": n, "kind": k, "x": x, "y": y}
                for n, (x, y, k) in case.landmarks.items()
                if n in names
            ],
        }
    )


def measure(data: DataSet, corrected: int, extractor, preparation) -> dict[str, Totals]:
    domain = load_domain(data.template.region)
    template_map, *maps = compute_feature_maps(
        [data.template_image, *(c.image for c in data.cases)], extractor, preparation
    )
    bundle = TemplateBundle(
        build_template_reference(template_map, data.template, domain), data.template, domain
    )
    settings = SearchSettings()

    def label(case: Case, fmap, bank) -> tuple[int, int, int, int, float, int]:
        started = time.perf_counter()
        located = localize_image(fmap, bundle, settings, case.image.pixel_spacing_mm, bank)
        ms = 1000 * (time.perf_counter() - started)
        outcomes = score_image(case.key, located.results, case.truth, case.image.pixel_spacing_mm)
        return (
            sum(r.status != "ok" for r in located.results),
            sum(o.outcome == IDENTIFIED for o in outcomes),
            sum(o.outcome == WRONG for o in outcomes),
            sum(o.outcome != "ok_but_absent" for o in outcomes),
            ms,
            located.tried,
        )

    first = [label(case, fmap, []) for case, fmap in zip(data.cases, maps, strict=True)]
    flagged = [i for i, result in enumerate(first) if result[0] > 0]
    reviewed = flagged[:corrected]
    names = set(data.template.names())
    bank = [
        NamedTemplate(
            f"bank/{data.cases[i].key}",
            build_template_reference(
                maps[i], reviewed_template(data.cases[i], names, data.template.region), domain
            ),
            reviewed_template(data.cases[i], names, data.template.region),
        )
        for i in reviewed
    ]
    totals = {"before": Totals(), "after": Totals()}
    for i, (case, fmap) in enumerate(zip(data.cases, maps, strict=True)):
        if i in reviewed:
            continue
        for name, result in (("before", first[i]), ("after", label(case, fmap, bank))):
            total = totals[name]
            total.images += 1
            total.flagged += result[0]
            total.identified += result[1]
            total.wrong += result[2]
            total.vertebrae += result[3]
            total.search_ms += result[4]
            total.searches += result[5]
    print(
        f"{data.name}: {len(data.cases)} images, {len(flagged)} with flags; "
        f"{len(reviewed)} reviewed into the bank",
        file=sys.stderr,
    )
    return totals


def measure_named(data: DataSet, extractor, preparation) -> dict[str, Totals]:
    """Every image labelled with the default template alone, then with a second template in
    ``template/<name>/`` (a well-centred phantom in the targets' water contrast)."""
    domain = load_domain(data.template.region)
    rng = np.random.default_rng(5)
    phantom = make_phantom(replace(template_params(5), **family_overrides("water", rng)))
    landmarks = parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": n, "kind": k, "x": x, "y": y}
                for n, (x, y, k) in phantom.landmarks.items()
                if n in TEMPLATE_LANDMARKS
            ],
        }
    )
    named_image = _image(phantom.pixels, phantom.pixel_spacing_mm, 998)
    template_map, named_map, *maps = compute_feature_maps(
        [data.template_image, named_image, *(c.image for c in data.cases)], extractor, preparation
    )
    bundle = TemplateBundle(
        build_template_reference(template_map, data.template, domain), data.template, domain
    )
    named = NamedTemplate(
        "water", build_template_reference(named_map, landmarks, domain), landmarks
    )
    totals = {"before": Totals(), "after": Totals()}
    for case, fmap in zip(data.cases, maps, strict=True):
        for name, alternatives in (("before", []), ("after", [named])):
            started = time.perf_counter()
            located = localize_image(
                fmap, bundle, SearchSettings(), case.image.pixel_spacing_mm, alternatives
            )
            total = totals[name]
            total.search_ms += 1000 * (time.perf_counter() - started)
            outcomes = score_image(
                case.key, located.results, case.truth, case.image.pixel_spacing_mm
            )
            total.images += 1
            total.searches += located.tried
            total.flagged += sum(r.status != "ok" for r in located.results)
            total.identified += sum(o.outcome == IDENTIFIED for o in outcomes)
            total.wrong += sum(o.outcome == WRONG for o in outcomes)
            total.vertebrae += sum(o.outcome != "ok_but_absent" for o in outcomes)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=24, help="synthetic cases")
    parser.add_argument("--corrected", type=int, default=3, help="flagged images reviewed")
    args = parser.parse_args(argv)
    extractor = load_extractor()
    preparation = PreparationSettings()
    sets = [synthetic_set(args.cases)]
    if REAL_SETS["ivd"].is_dir() and REAL_SETS["dev"].is_dir():
        ivd = load_truth_dir("ivd", REAL_SETS["ivd"], REAL_SETS["ivd"] / "template")
        dev = load_truth_dir("dev", REAL_SETS["dev"], REAL_SETS["dev"] / "template")
        sets.append(DataSet("ivd -> dev", ivd.template_image, ivd.template, dev.cases))
    else:
        print("note: ../shared/realdata is absent; the real set is skipped", file=sys.stderr)
    print(
        "| set | images not reviewed | vertebrae | flagged landmarks before -> after "
        "| identified before -> after | confidently wrong before -> after "
        "| searches/image before -> after | search ms/image before -> after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = [(data.name, measure(data, args.corrected, extractor, preparation)) for data in sets]
    rows.append(("fat + template/water/ -> water", measure_named(sets[0], extractor, preparation)))
    for name, totals in rows:
        before, after = totals["before"], totals["after"]
        print(
            f"| {name} | {before.images} | {before.vertebrae} "
            f"| {before.flagged} -> {after.flagged} "
            f"| {before.identified} -> {after.identified} "
            f"| {before.wrong} -> {after.wrong} "
            f"| {before.searches / max(before.images, 1):.2f} -> "
            f"{after.searches / max(after.images, 1):.2f} "
            f"| {before.search_ms / max(before.images, 1):.1f} -> "
            f"{after.search_ms / max(after.images, 1):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
