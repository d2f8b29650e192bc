"""The definitions load without torch: the code server, the daemon and every run process import
them, and torch costs about 1 GB per process; only a run that computes features or searches
imports it (inside the asset)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "torchvision", "open_clip", "timm")


def _import_in_fresh_process(module: str) -> dict:
    script = textwrap.dedent(
        f"""
        import json, sys
        import {module}
        print(json.dumps({{name: name in sys.modules for name in {list(HEAVY)!r}}}))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_definitions_import_without_torch() -> None:
    loaded = _import_in_fresh_process("labeling_pipeline.definitions")
    assert not any(loaded.values()), f"imported when the definitions load: {loaded}"


def test_the_check_sees_torch_where_it_is_imported() -> None:
    # The same probe on a module that needs torch: the test above can fail.
    loaded = _import_in_fresh_process("labeling_pipeline.localization.study")
    assert loaded["torch"]
