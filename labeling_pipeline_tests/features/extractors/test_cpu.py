"""CPU settings of inference that must hold in every process that runs it."""

import os
import subprocess
import sys

import pytest

_REPORT = (
    "import sys, labeling_pipeline.features.extractors.cpu as cpu; "
    "import os; print(os.environ.get('OMP_WAIT_POLICY')); "
    "print(sorted(m for m in sys.modules if m == 'torch'))"
)


@pytest.mark.parametrize(("user_setting", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise(
    user_setting: str | None, expected: str
) -> None:
    # The runtime reads the policy when torch loads it: the package sets it on import, and the
    # extractors' module (which imports torch) can only be imported through the package.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_setting is not None:
        env["OMP_WAIT_POLICY"] = user_setting
    out = subprocess.run(
        [sys.executable, "-c", _REPORT], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == expected
    assert out[1] == "['torch']"
