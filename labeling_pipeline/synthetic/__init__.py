"""Synthetic sagittal lumbar spine MR phantoms with exact ground truth, and DICOM output.

``make_phantom(params)`` renders one image; ``random_params(rng, **overrides)`` draws params;
``generate_cases(count, seed, **overrides)`` gives a list of phantoms for tests and benchmarks.
``python -m labeling_pipeline.synthetic`` builds the bundled sample data and test sets.
"""

from labeling_pipeline.synthetic.params import PhantomParams, random_params
from labeling_pipeline.synthetic.phantom import Phantom, generate_cases, make_phantom, make_slices
from labeling_pipeline.synthetic.spine_tables import LABELLED_DISCS, LABELLED_VERTEBRAE

__all__ = [
    "LABELLED_DISCS",
    "LABELLED_VERTEBRAE",
    "Phantom",
    "PhantomParams",
    "generate_cases",
    "make_phantom",
    "make_slices",
    "random_params",
]
