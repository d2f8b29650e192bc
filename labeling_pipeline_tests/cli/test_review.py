"""``labeling-pipeline review`` and ``labeling-pipeline export coco`` on a reviewed output."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from labeling_pipeline.cli import main
from labeling_pipeline.review.server import free_port

REPO = Path(__file__).resolve().parents[2]


def test_export_coco_writes_the_curated_keypoints(reviewable, capsys):
    status = main(
        [
            "export",
            "coco",
            "--data-dir",
            str(reviewable.data_dir),
            "--output-dir",
            str(reviewable.output_dir),
            "--dates",
            "year",
        ]
    )
    assert status == 0, capsys.readouterr().err
    document = json.loads((reviewable.output_dir / "coco" / "keypoints.json").read_text())
    assert len(document["images"]) == 2 and {i["date_captured"] for i in document["images"]} == {
        "2026"
    }
    assert "COCO keypoints of 2 images" in capsys.readouterr().out
    empty = reviewable.output_dir.parent / "empty"
    assert main(["export", "coco", "--output-dir", str(empty)]) == 2


def test_review_command_serves_the_app_on_localhost(reviewable):
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labeling_pipeline.cli",
            "review",
            "--port",
            str(port),
            "--data-dir",
            str(reviewable.data_dir),
            "--output-dir",
            str(reviewable.output_dir),
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queue") as response:
                    queue = json.loads(response.read())
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the review app did not start"
                time.sleep(0.3)
        assert len(queue["images"]) == 2
    finally:
        process.terminate()
        process.wait(timeout=20)
