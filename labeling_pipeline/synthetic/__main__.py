"""Command line of the phantom generator.

``python -m labeling_pipeline.synthetic sample-data --out data`` rebuilds the bundled sample data;
``python -m labeling_pipeline.synthetic dataset --out DIR --count N --seed S`` writes a larger
generated test set (``DIR/template``, ``DIR/incoming``, ``DIR/truth.json``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from labeling_pipeline.synthetic.sample_data import LAYOUTS, build_dataset, build_sample_data


def _layouts(text: str) -> tuple[str, ...]:
    layouts = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [layout for layout in layouts if layout not in LAYOUTS]
    if bad or not layouts:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(LAYOUTS)} (comma-separated)")
    return layouts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labeling_pipeline.synthetic",
        description="Synthetic sagittal lumbar spine MR images with ground truth.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample-data", help="write the bundled sample data (deterministic)")
    sample.add_argument("--out", type=Path, default=Path("data"), help="data directory")
    dataset = sub.add_parser("dataset", help="write a generated test set with truth.json")
    dataset.add_argument("--out", type=Path, required=True, help="output directory")
    dataset.add_argument("--count", type=int, required=True, help="number of studies")
    dataset.add_argument("--seed", type=int, default=0, help="random seed")
    dataset.add_argument(
        "--layouts",
        type=_layouts,
        default=("single",),
        help="comma-separated layouts cycled over the cases: single, series, multiframe",
    )
    dataset.add_argument(
        "--hard-fraction",
        type=float,
        default=0.25,
        help="share of hard cases (strong curvature, cut-off field of view, strong tilt)",
    )
    dataset.add_argument(
        "--slices", type=int, default=5, help="slices of series / frames of multi-frame cases (odd)"
    )
    dataset.add_argument(
        "--size", type=int, default=None, help="resample every case to SIZE x SIZE pixels"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sample-data":
        truth = build_sample_data(args.out)
        print(f"sample data written to {args.out}: {len(truth)} labelled images + template")
        return 0
    if args.count < 0:
        print("--count must be >= 0", file=sys.stderr)
        return 2
    if args.slices < 1 or args.slices % 2 == 0:
        print("--slices must be odd and >= 1", file=sys.stderr)
        return 2
    if args.size is not None and not 32 <= args.size <= 2048:
        print("--size must be within [32, 2048]", file=sys.stderr)
        return 2
    if not 0.0 <= args.hard_fraction <= 1.0:
        print("--hard-fraction must be within [0, 1]", file=sys.stderr)
        return 2
    truth = build_dataset(
        args.out, args.count, args.seed, args.layouts, args.hard_fraction, args.slices, args.size
    )
    print(f"dataset written to {args.out}: {len(truth)} labelled images + template")
    return 0


if __name__ == "__main__":
    sys.exit(main())
