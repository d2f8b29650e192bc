"""Feature extraction benchmark: throughput, pipeline overhead, store size, peak memory.

For the bundled CNN (efficientnet-lite0, its real weights) and an open_clip ViT-B-16 (random
weights: timing only), at the default settings on this machine:

- images per second and ms per image of the pipeline (``compute_feature_maps``: preparation,
  network, resampling to the output grid, normalisation, copy to numpy);
- the ratio of that time to the bare network forward on the same prepared inputs (inputs built
  beforehand, only the model call timed);
- the same with writing ``features.zarr`` (``materialize_features``) included;
- bytes per image in ``features.zarr``;
- peak memory (process peak RSS; peak CUDA memory where a GPU is used).

Per batch, the bare network, the pipeline and the pipeline with the store write run alternately
``--repeats`` times and the best time of each is kept (the least disturbed by other work on a
shared machine).

``--matching`` instead sweeps CNN layers / output stride / mm per pixel on the real MRI: the
template's feature at each of its vertebrae (L1-L5) is searched in every case, over the whole
image (nearest neighbour, no anatomy: does the feature alone pick the right level?) and within
20 mm of the truth (how precisely does it land?), errors in mm against truth.json.

Inputs: the real lumbar MRI slices of ``../shared/realdata/lumbar_mri_dev`` (224 x 224, 1 mm)
when present, else smooth synthetic images of the same size. Each model runs in its own
process so that peak memory is its own.

    .venv/bin/python benchmarks/features.py [--images 32] [--batch-size 8] [--repeats 3]
    .venv/bin/python benchmarks/features.py --matching
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO / ".." / "shared" / "realdata" / "lumbar_mri_dev"
MODELS = [
    {"model": "efficientnet-lite0", "weights": None},
    {"model": "open_clip:ViT-B-16", "weights": "random"},
]


def load_images(count: int):
    """``count`` LabelImages: real MRI slices when available, else synthetic (224 x 224, 1 mm)."""
    from labeling_pipeline.imaging.image import LabelImage

    files = sorted(REALDATA.glob("VB3_*/slice_*.dcm")) if REALDATA.is_dir() else []
    images = []
    if files:
        import pydicom

        for path in files[:count]:
            ds = pydicom.dcmread(path)
            images.append(
                LabelImage(
                    study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.SeriesInstanceUID),
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    study_date="",
                    modality=str(ds.Modality),
                    pixels=ds.pixel_array.astype(np.float32),
                    pixel_spacing_mm=tuple(float(v) for v in ds.PixelSpacing),
                    photometric_interpretation=str(ds.PhotometricInterpretation),
                )
            )
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    while len(images) < count:
        pixels = gaussian_filter(rng.uniform(0, 4000, (224, 224)), 3).astype(np.float32)
        images.append(
            LabelImage("1.2", "1.2.3", f"1.2.3.{len(images)}", "", "MR", pixels, (1.0, 1.0))
        )
    return images, ("real MRI" if files else "synthetic")


def _sync(extractor) -> None:
    import torch

    if extractor.device.type == "cuda":
        torch.cuda.synchronize()


def run_one(model: str, weights: str | None, count: int, batch_size: int, repeats: int) -> dict:
    """Benchmark one model in this process; returns the measurements."""
    import torch

    from labeling_pipeline.features.compute import compute_feature_maps
    from labeling_pipeline.features.extractors import load_extractor
    from labeling_pipeline.features.materialize import materialize_features
    from labeling_pipeline.features.preprocess import PreparationSettings, prepare_image
    from labeling_pipeline.features.store import FeatureStore

    images, source = load_images(count)
    preparation = PreparationSettings()
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports
    started = time.perf_counter()
    extractor = load_extractor(model, weights=weights, allow_random_weights=weights == "random")
    load_s = time.perf_counter() - started

    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    # Bare network: normalised input tensors built beforehand, only the model call is timed.
    inputs = [
        extractor._to_input([prepare_image(i, preparation).pixels for i in b]) for b in batches
    ]
    runs = [0]

    def bare(k: int) -> None:
        with torch.inference_mode(), extractor._autocast():
            extractor._forward_groups(inputs[k])
        _sync(extractor)

    def pipeline(k: int) -> None:
        compute_feature_maps(batches[k], extractor, preparation, batch_size=batch_size)
        _sync(extractor)

    def with_store(k: int) -> None:
        # a fresh partition each time, so that everything is computed and written
        runs[0] += 1
        materialize_features(store, f"p{runs[0]}", batches[k], extractor, preparation, batch_size)

    def timed(fn, k: int) -> tuple[float, float]:
        """(wall, process CPU) seconds of fn(k); CPU time counts all torch threads and is less
        disturbed than wall time by other processes competing for the cores."""
        wall, cpu = time.perf_counter(), time.process_time()
        fn(k)
        return time.perf_counter() - wall, time.process_time() - cpu

    kinds = {"bare": bare, "pipeline": pipeline, "with_store": with_store}
    wall = dict.fromkeys(kinds, 0.0)
    cpu = dict.fromkeys(kinds, 0.0)
    nbytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp) / "features.zarr")
        for k in range(len(batches)):  # warm-up (allocator, kernels, caches)
            for fn in kinds.values():
                fn(k)
        # Per batch the three runs alternate so that they see the same machine load; the best
        # of the repeats of each batch is kept (the least disturbed by other work).
        for k in range(len(batches)):
            best = {name: (math.inf, math.inf) for name in kinds}
            for _ in range(repeats):
                for name, fn in kinds.items():
                    w, c = timed(fn, k)
                    best[name] = (min(best[name][0], w), min(best[name][1], c))
            for name in kinds:
                wall[name] += best[name][0]
                cpu[name] += best[name][1]
            nbytes += store.nbytes(f"p{runs[0]}")
    settings = extractor.settings()
    one = compute_feature_maps(images[:1], extractor, preparation)[0]
    result = {
        "model": model,
        "weights": "random (timing only)" if settings["random_init"] else "real",
        "device": str(extractor.device),
        "torch_threads": torch.get_num_threads(),
        "inputs": f"{count} x 224x224 {source}, batch {batch_size}",
        "grid": " x ".join(str(n) for n in one.features.shape),
        "layers": settings["layers"],
        "stride": settings["stride"],
        "load_s": round(load_s, 2),
        "images_per_s": round(count / wall["pipeline"], 1),
        "ms_per_image": round(1000 * wall["pipeline"] / count, 1),
        "bare_ms_per_image": round(1000 * wall["bare"] / count, 1),
        "pipeline_over_bare_wall": round(wall["pipeline"] / wall["bare"], 3),
        "pipeline_over_bare_cpu": round(cpu["pipeline"] / cpu["bare"], 3),
        "with_store_ms_per_image": round(1000 * wall["with_store"] / count, 1),
        "with_store_over_bare_wall": round(wall["with_store"] / wall["bare"], 3),
        "with_store_over_bare_cpu": round(cpu["with_store"] / cpu["bare"], 3),
        "zarr_bytes_per_image": int(nbytes / count),
        "raw_float16_bytes_per_image": int(one.features.size * 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mib": round(baseline_rss, 1),
    }
    if extractor.device.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


MATCHING_CONFIGS = [  # (CNN layers, output stride, mm per prepared pixel)
    ((1, 2, 3), 4, 1.0),
    ((2, 3), 4, 1.0),
    ((2, 3, 4), 4, 1.0),
    ((3, 4), 4, 1.0),
    ((2, 3, 4), 8, 1.0),
    ((1, 2, 3), 4, 1.5),
    ((2, 3, 4), 4, 1.5),
    ((2, 3, 4), 4, 2.0),
]


def _sample(fmap, x: float, y: float) -> np.ndarray:
    """Bilinear feature of the original-image pixel (x, y), renormalised."""
    gx, gy = fmap.transform.from_original(x, y)
    f = fmap.features
    h, w = f.shape[1:]
    x0, y0 = int(np.clip(np.floor(gx), 0, w - 2)), int(np.clip(np.floor(gy), 0, h - 2))
    ax, ay = float(np.clip(gx - x0, 0, 1)), float(np.clip(gy - y0, 0, 1))
    v = (
        f[:, y0, x0] * (1 - ax) * (1 - ay)
        + f[:, y0, x0 + 1] * ax * (1 - ay)
        + f[:, y0 + 1, x0] * (1 - ax) * ay
        + f[:, y0 + 1, x0 + 1] * ax * ay
    )
    return v / np.linalg.norm(v)


def matching() -> None:
    """Sweep CNN settings: how well the template's vertebra features find the same vertebra."""
    import pydicom

    from labeling_pipeline.features.compute import compute_feature_maps
    from labeling_pipeline.features.extractors import load_extractor
    from labeling_pipeline.features.preprocess import PreparationSettings
    from labeling_pipeline.imaging.image import LabelImage

    if not REALDATA.is_dir():
        raise SystemExit(f"--matching needs the real data at {REALDATA}")

    def read(path: Path) -> LabelImage:
        ds = pydicom.dcmread(path)
        return LabelImage(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), "",
            str(ds.Modality), ds.pixel_array.astype(np.float32),
            tuple(float(v) for v in ds.PixelSpacing), str(ds.PhotometricInterpretation),
        )  # fmt: skip

    template = read(REALDATA / "template" / "template.dcm")
    marks = json.loads((REALDATA / "template" / "landmarks.json").read_text())["landmarks"]
    reference = {m["name"]: (m["x"], m["y"]) for m in marks if m["kind"] == "vertebra"}
    truth = json.loads((REALDATA / "truth.json").read_text())
    cases = [
        (read(REALDATA / v["file"]), {k: (d["x"], d["y"]) for k, d in v["landmarks"].items()})
        for v in truth.values()
    ]
    print(
        "layers     stride  mm/px | global: median mm, right level | within 20 mm: median mm, <5 mm"
    )
    for layers, stride, mm in MATCHING_CONFIGS:
        extractor = load_extractor(layers=layers, output_stride=stride)
        maps = compute_feature_maps(
            [template] + [c for c, _ in cases], extractor, PreparationSettings(mm_per_pixel=mm)
        )
        refs = {name: _sample(maps[0], *xy) for name, xy in reference.items()}
        global_err, right, local_err = [], [], []
        for fmap, (_, marks_true) in zip(maps[1:], cases, strict=True):
            gy, gx = np.mgrid[0 : fmap.grid_shape[0], 0 : fmap.grid_shape[1]]
            ox, oy = fmap.transform.to_original(gx, gy)
            for name, feature in refs.items():
                if name not in marks_true:
                    continue
                tx, ty = marks_true[name]
                scores = np.einsum("c,chw->hw", feature, fmap.features.astype(np.float32))
                best = np.unravel_index(int(np.argmax(scores)), scores.shape)
                x, y = ox[best], oy[best]
                global_err.append(float(np.hypot(x - tx, y - ty)))
                nearest = min(
                    marks_true, key=lambda n: np.hypot(x - marks_true[n][0], y - marks_true[n][1])
                )
                right.append(nearest == name and global_err[-1] < 15.0)
                near = np.hypot(ox - tx, oy - ty) <= 20.0
                best = np.unravel_index(
                    int(np.argmax(np.where(near, scores, -np.inf))), scores.shape
                )
                local_err.append(float(np.hypot(ox[best] - tx, oy[best] - ty)))
        # the images are 1 mm pixels, so pixel distances are mm
        print(
            f"{str(layers):10s} {stride:6d} {mm:6.2f} | {np.median(global_err):14.1f} "
            f"{100 * np.mean(right):11.0f} % | {np.median(local_err):18.1f} "
            f"{100 * np.mean(np.array(local_err) < 5):6.0f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one model, print JSON
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--matching", action="store_true", help="sweep CNN settings on real MRI")
    args = parser.parse_args()
    if args.matching:
        matching()
        return
    if args.one:
        weights = None if args.weights in (None, "") else args.weights
        result = run_one(args.one, weights, args.images, args.batch_size, args.repeats)
        print("RESULT " + json.dumps(result))
        return

    results = []
    for spec in MODELS:
        command = [
            sys.executable,
            __file__,
            "--one",
            spec["model"],
            "--weights",
            spec["weights"] or "",
            "--images",
            str(args.images),
            "--batch-size",
            str(args.batch_size),
            "--repeats",
            str(args.repeats),
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise SystemExit(f"benchmark of {spec['model']} failed")
        results.append(json.loads(lines[-1][len("RESULT ") :]))

    for r in results:
        print(f"\n{r['model']} ({r['weights']}, {r['device']}, {r['torch_threads']} threads)")
        for key, value in r.items():
            if key not in ("model", "weights", "device", "torch_threads"):
                print(f"  {key:28s} {value}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "features.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
