"""Fit the chain's confidence on real template/target pairs and the hard synthetic families.

Every label placed by the chain strategy has a margin: how much better the best chain scores
than the best chain that places that vertebra elsewhere. Its confidence is
``logistic(slope * margin + offset)``. This script localizes every data family of
``benchmarks/accuracy.py`` (both real sets with every image as the template in turn, within and
across the sets; the mixed synthetic set; every hard family except ``six-lumbar``, whose level
names are ambiguous by design), records (margin, right or wrong) for each placed vertebra, and
fits slope and offset by logistic regression with every family weighted equally, so that the
large crossed real sets do not drown the rest. It prints the fit and, for several
``min_confidence`` values, the margin below which a label is flagged and what that flagging
would give per family.

    .venv/bin/python benchmarks/calibrate_confidence.py [--family-count 12]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import (  # noqa: E402
    FeatureCache,
    load_truth_dir,
    real_groups,
)

from labeling_pipeline.anatomy import load_domain  # noqa: E402
from labeling_pipeline.features.preprocess import PreparationSettings  # noqa: E402
from labeling_pipeline.localization.evaluation import IDENTIFIED, WRONG, score_image  # noqa: E402
from labeling_pipeline.localization.reference import build_template_reference  # noqa: E402
from labeling_pipeline.localization.search import SearchSettings, localize  # noqa: E402
from labeling_pipeline.synthetic.families import FAMILIES  # noqa: E402
from labeling_pipeline.synthetic.sample_data import build_dataset  # noqa: E402

AMBIGUOUS_FAMILIES = ("six-lumbar",)


def margins(groups, cache: FeatureCache) -> list[tuple[str, float, bool]]:
    """(family, margin, right) for every vertebra the chain placed."""
    # Raw margins: no flag threshold, and no cap from a disputed count (that caps confidence
    # at 0.5 whatever the margin, which is not what the fit is about).
    raw = replace(
        SearchSettings(),
        confidence_slope=1.0,
        confidence_offset=0.0,
        min_confidence=0,
        anchor_dissent_margin=math.inf,
    )
    rows = []
    for family, sets in groups.items():
        for data in sets:
            domain = load_domain(data.template.region)
            reference = build_template_reference(
                cache.get(data.template_image), data.template, domain
            )
            for case in data.cases:
                results = localize(cache.get(case.image), reference, domain, raw)
                by_name = {r.name: r for r in results}
                for outcome in score_image(
                    case.key, results, case.truth, case.image.pixel_spacing_mm
                ):
                    if outcome.outcome not in (IDENTIFIED, WRONG):
                        continue
                    p = min(max(by_name[outcome.landmark].confidence, 1e-12), 1 - 1e-12)
                    rows.append((family, math.log(p / (1 - p)), outcome.outcome == IDENTIFIED))
    return rows


def fit(rows: list[tuple[str, float, bool]]) -> tuple[float, float]:
    """Logistic regression of right/wrong on the margin, each family weighted equally."""
    families = np.array([r[0] for r in rows])
    margin = np.array([r[1] for r in rows])
    right = np.array([r[2] for r in rows], dtype=float)
    weight = np.zeros(len(rows))
    for family in set(families):
        weight[families == family] = 1.0 / np.sum(families == family)
    weight *= len(rows) / weight.sum()
    x = np.stack([margin, np.ones_like(margin)], axis=1)
    beta = np.zeros(2)
    for _ in range(100):  # Newton's method
        p = 1.0 / (1.0 + np.exp(-x @ beta))
        gradient = x.T @ (weight * (right - p))
        hessian = -(x * (weight * p * (1 - p))[:, None]).T @ x
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(beta[0]), float(beta[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family-count", type=int, default=12)
    parser.add_argument("--synthetic-count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    cache = FeatureCache("efficientnet-lite0", None, PreparationSettings())
    groups = real_groups(cross=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_dataset(root / "mixed", args.synthetic_count, args.seed)
        groups["synthetic"] = [load_truth_dir("synthetic", root / "mixed", root / "mixed/template")]
        for family in FAMILIES:
            if family in AMBIGUOUS_FAMILIES:
                continue
            build_dataset(root / family, args.family_count, args.seed, family=family)
            groups[family] = [load_truth_dir(family, root / family, root / family / "template")]
        rows = margins(groups, cache)
    slope, offset = fit(rows)
    print(f"confidence = logistic({slope:.3f} * margin + {offset:+.3f}) over {len(rows)} labels")
    for min_confidence in (0.5, 0.75, 0.85, 0.9):
        threshold = (math.log(min_confidence / (1 - min_confidence)) - offset) / slope
        print(f"\nmin_confidence {min_confidence}: flagged below margin {threshold:.2f}")
        per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for family, margin, right in rows:
            counts = per_family[family]
            counts[0] += 1
            if margin >= threshold:
                counts[1 if right else 2] += 1
        for family, (n, right_ok, wrong_ok) in per_family.items():
            print(f"  {family:18s} placed {n:4d}  ok+right {right_ok:4d}  ok+wrong {wrong_ok:3d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
