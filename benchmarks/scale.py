"""Archive scale through the real Dagster path: a backfill, and the CLI.

For two sizes (``--small`` and ``--studies`` generated studies, one labelled image each) it
generates a data set, then times ``labeling-pipeline backfill`` over all of it in a fresh
Dagster instance (the repository's ``dagster.yaml``): catalog, template reference, batched runs
(each a process importing torch and Dagster; no daemon runs for the fresh instance, so the
command does the daemon's backfill and queue work), curated labels. Wall-clock time of the
whole command, start-up included; peak RSS summed over the process tree doing the work (the
command, its code server and the runs), sampled every 0.2 s. For the
larger size, ``labeling-pipeline run`` too (fresh instance and outputs): the runs it launches
from its own code server, the QA report included (``cli_run`` in the JSON line).

Then, for the larger set, the compute-only time of the same images: reading, features,
search and labels (Parquet and overlays) with the same core functions, in this process,
without Dagster (model loaded beforehand, not counted).

Prints a table and, as its last line, one JSON object: ``studies``, ``images``,
``images_per_second``, ``compute_seconds``, ``ratio_to_compute``, ``peak_rss_mb_small``,
``peak_rss_mb_large``, ``feature_bytes_per_image``, ``unfinished_studies`` (studies with an
image to label that have no labels), and the timings of both sizes.

    python benchmarks/scale.py                      # 500 studies (and 100)
    python benchmarks/scale.py --studies 100 --small 40
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of ``root_pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        pid = int(entry.name)
        children.setdefault(ppid, []).append(pid)
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1]) * 1024
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class PeakRss:
    """Samples the RSS of a process tree until stopped; ``peak`` in bytes."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def generate(data: Path, studies: int, seed: int) -> None:
    from labeling_pipeline.synthetic.sample_data import build_dataset

    build_dataset(data, studies, seed, layouts=("single",))
    shutil.copytree(REPO / "data" / "domain", data / "domain", dirs_exist_ok=True)


def backfill(data: Path, output: Path, home: Path) -> dict:
    """Run ``labeling-pipeline backfill`` over every study date; wall time and peak RSS."""
    return command_line(
        ["backfill", "--from", "1900-01-01", "--to", "2100-12-31", "--quiet"], data, output, home
    )


def cli_run(data: Path, output: Path, home: Path) -> dict:
    """Run ``labeling-pipeline run`` over the data directory; wall time and peak RSS."""
    return command_line(["run", "--quiet"], data, output, home)


def command_line(arguments: list[str], data: Path, output: Path, home: Path) -> dict:
    """One ``labeling-pipeline`` command in a fresh instance at ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "labeling_pipeline.cli", *arguments]
    command += ["--data-dir", str(data), "--output-dir", str(output)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    sampler = PeakRss(process.pid)
    out, _ = process.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if process.returncode != 0:
        print(out, file=sys.stderr)
    return {"seconds": seconds, "peak_rss": peak, "status": process.returncode, "out": out}


def outcome(output: Path) -> dict:
    """Labelled images, studies without labels, feature store bytes per image."""
    import pandas as pd

    from labeling_pipeline.imaging.dicom import labelled_partition_keys

    catalog = pd.read_parquet(output / "catalog.parquet")
    keys = labelled_partition_keys(catalog)
    labelled = {p.stem for p in (output / "labels").glob("*.parquet")}
    labels = pd.read_parquet(output / "labels") if labelled else pd.DataFrame()
    images = int(labels["sop_instance_uid"].nunique()) if len(labels) else 0
    store = output / "features.zarr"
    stored = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return {
        "studies": len(keys),
        "images": images,
        "unfinished": len(set(keys) - labelled),
        "feature_bytes_per_image": stored / images if images else 0.0,
    }


def compute_only(data: Path, output: Path) -> tuple[float, int]:
    """The same images through the core functions, no Dagster: seconds, images."""
    import pandas as pd

    from labeling_pipeline.anatomy import load_domain
    from labeling_pipeline.features.compute import compute_feature_maps
    from labeling_pipeline.features.extractors import load_extractor
    from labeling_pipeline.features.materialize import materialize_features_batch
    from labeling_pipeline.features.preprocess import PreparationSettings
    from labeling_pipeline.features.store import FeatureStore
    from labeling_pipeline.imaging.dicom import image_key, labelled_partition_keys, read_label_image
    from labeling_pipeline.imaging.study import StudyImages, read_study_images
    from labeling_pipeline.labels.dataset import label_rows, write_labels_partition
    from labeling_pipeline.labels.overlay import render_overlay
    from labeling_pipeline.localization.bundle import TemplateBundle
    from labeling_pipeline.localization.reference import ReferenceSettings, build_template_reference
    from labeling_pipeline.localization.study import localize_study, search_settings
    from labeling_pipeline.localization.template import load_template_landmarks

    extractor = load_extractor(model="efficientnet-lite0", weights=None)
    preparation = PreparationSettings()
    landmarks = load_template_landmarks(data / "template" / "landmarks.json")
    domain = load_domain(landmarks.region, data / "domain")
    [template_map] = compute_feature_maps(
        [read_label_image(data / "template" / "template.dcm")], extractor, preparation
    )
    template = TemplateBundle(
        reference=build_template_reference(template_map, landmarks, domain, ReferenceSettings()),
        landmarks=landmarks,
        domain=domain,
    )
    catalog = pd.read_parquet(output / "catalog.parquet")
    keys = labelled_partition_keys(catalog)
    work = Path(tempfile.mkdtemp(prefix="compute-only-"))
    store = FeatureStore(work / "features.zarr")
    settings = search_settings(None)
    started = time.perf_counter()
    studies = {}
    for key in keys:
        images, _ = read_study_images(catalog, key, data)
        studies[key] = images
    materialize_features_batch(store, studies, extractor, preparation)
    count = 0
    for key, images in studies.items():
        study = StudyImages(key, "", "efficientnet-lite0", images)
        localization = localize_study(store, study, template, settings)
        frames = []
        for image, results in zip(localization.images, localization.results, strict=True):
            frames.append(label_rows(image, key, results, {}, template=landmarks))
            render_overlay(
                image, frames[-1], work / "overlays" / f"{image_key(image.sop_instance_uid)}.png"
            )
            count += 1
        write_labels_partition(work / "labels", key, pd.concat(frames, ignore_index=True))
    seconds = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=500, help="the larger size (default 500)")
    parser.add_argument(
        "--small", type=int, default=None, help="the smaller size (default: a fifth, at least 10)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = parser.parse_args()
    small = args.small or max(args.studies // 5, 10)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="scale-"))
    runs = {}
    for name, size in (("small", small), ("large", args.studies)):
        data, output = root / name / "data", root / name / "out"
        generate(data, size, args.seed)
        result = backfill(data, output, root / name / "home")
        result.update(outcome(output))
        runs[name] = result
        print(
            f"{name:5} {result['studies']:4} studies {result['images']:4} images: "
            f"{result['seconds']:7.1f} s, {result['images'] / result['seconds']:.2f} images/s, "
            f"peak RSS {result['peak_rss'] / 2**20:.0f} MB, unfinished {result['unfinished']}, "
            f"exit {result['status']}",
            flush=True,
        )
    large = runs["large"]
    cli_output = root / "large" / "out-cli"
    cli = cli_run(root / "large" / "data", cli_output, root / "large" / "home-cli")
    cli.update(outcome(cli_output))
    print(
        f"cli   {cli['studies']:4} studies {cli['images']:4} images: {cli['seconds']:7.1f} s, "
        f"{cli['images'] / cli['seconds']:.2f} images/s, peak RSS {cli['peak_rss'] / 2**20:.0f} "
        f"MB, unfinished {cli['unfinished']}, exit {cli['status']}",
        flush=True,
    )
    compute_seconds, compute_images = compute_only(root / "large" / "data", root / "large" / "out")
    rate = large["images"] / large["seconds"] if large["seconds"] else 0.0
    print(
        f"compute only: {compute_images} images in {compute_seconds:.1f} s "
        f"({compute_images / compute_seconds:.2f} images/s); end to end / compute = "
        f"{large['seconds'] / compute_seconds:.2f}"
    )
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        "studies": large["studies"],
        "images": large["images"],
        "images_per_second": round(rate, 3),
        "seconds": round(large["seconds"], 1),
        "compute_seconds": round(compute_seconds, 1),
        "ratio_to_compute": round(large["seconds"] / compute_seconds, 2),
        "peak_rss_mb_small": round(runs["small"]["peak_rss"] / 2**20, 1),
        "peak_rss_mb_large": round(large["peak_rss"] / 2**20, 1),
        "feature_bytes_per_image": round(large["feature_bytes_per_image"]),
        "unfinished_studies": large["unfinished"] + runs["small"]["unfinished"],
        "small": {
            "studies": runs["small"]["studies"],
            "images": runs["small"]["images"],
            "seconds": round(runs["small"]["seconds"], 1),
        },
        "cli_run": {
            "studies": cli["studies"],
            "images": cli["images"],
            "seconds": round(cli["seconds"], 1),
            "images_per_second": round(cli["images"] / cli["seconds"], 3),
            "peak_rss_mb": round(cli["peak_rss"] / 2**20, 1),
            "unfinished_studies": cli["unfinished"],
            "exit_status": cli["status"],
        },
        "exit_status": [runs["small"]["status"], large["status"]],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
