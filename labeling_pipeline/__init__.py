"""One-shot vertebra labelling of spine DICOM studies, as a Dagster pipeline.

The functional core (``imaging``, ``features``, ``localization``, ``labels``, ``anatomy``,
``synthetic``) holds pure numpy/torch code; ``defs`` is the thin Dagster shell that wires it.
"""

import os

# Threads of torch's OpenMP runtime sleep while they wait for work, instead of spinning (GNU
# OpenMP's default). A run shares the CPU with Dagster's daemon, code servers and the command
# that follows it: spinning threads fight them for the cores, and feature extraction took up to
# 9x longer on a busy 2-core machine (benchmarks/README.md, "Threads that wait"). Read when torch
# loads its OpenMP runtime, so it is set here, before any module imports torch; a user's
# setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
