"""Hard families of generated cases: other contrasts, fields of view, pathology and variants.

Each family draws :class:`PhantomParams` overrides on top of :func:`random_params` (which
already varies anatomy, framing, tilt, noise and the T2 look), so that accuracy can be measured
per kind of difficulty that clinical archives bring:

- contrast: ``t1`` (dark fluid and discs, bright fat and marrow), ``stir`` (fat and fatty marrow
  suppressed, fluid bright), ``water`` and ``fat`` (the two images of a Dixon water-fat scan);
- field of view: ``long-fov`` (T10 to the sacrum at 0.5 mm pixels, 512-640 pixels, the spine
  anywhere in the image), ``short-fov`` (L2 to the sacrum only), ``size`` (bodies 12-20 %
  smaller or larger than average);
- pathology: ``spondylolisthesis`` (grade 1-2 anterior slip at L4-L5 or L5-S1),
  ``wedge-fracture`` (25-50 % anterior height loss), ``disc-collapse``, ``out-of-plane``
  (scoliotic bow out of the sagittal plane);
- variant: ``six-lumbar`` (transitional anatomy, an extra lumbar vertebra; truth counts from
  the top, T12 being the last rib-bearing vertebra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Overrides = dict[str, Any]


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _t1(rng: np.random.Generator) -> Overrides:
    return {
        "fluid_signal": _uniform(rng, 0.15, 0.3),
        "disc_signal": _uniform(rng, 0.45, 0.65),
        "nucleus_contrast": _uniform(rng, 0.0, 0.2),
        "marrow_signal": _uniform(rng, 0.7, 0.95),
        "fat_signal": _uniform(rng, 0.9, 1.1),
        "muscle_signal": _uniform(rng, 0.25, 0.35),
    }


def _stir(rng: np.random.Generator) -> Overrides:
    return {
        "fat_signal": _uniform(rng, 0.04, 0.12),
        "marrow_signal": _uniform(rng, 0.1, 0.25),
        "muscle_signal": _uniform(rng, 0.18, 0.3),
    }


def _water(rng: np.random.Generator) -> Overrides:
    return {
        "fat_signal": _uniform(rng, 0.08, 0.2),
        "marrow_signal": _uniform(rng, 0.25, 0.4),
        "muscle_signal": _uniform(rng, 0.25, 0.35),
    }


def _fat(rng: np.random.Generator) -> Overrides:
    return {
        "fluid_signal": _uniform(rng, 0.04, 0.1),
        "disc_signal": _uniform(rng, 0.1, 0.2),
        "nucleus_contrast": 0.0,
        "marrow_signal": _uniform(rng, 0.6, 0.9),
        "fat_signal": _uniform(rng, 0.9, 1.1),
        "muscle_signal": _uniform(rng, 0.08, 0.15),
    }


def _long_fov(rng: np.random.Generator) -> Overrides:
    size = int(rng.choice([512, 544, 576, 608, 640]))
    spacing = round(_uniform(rng, 0.5, 0.55), 4)
    return {
        "rows": size,
        "cols": size,
        "pixel_spacing_mm": (spacing, spacing),
        "fov_shift_y": _uniform(rng, -1.0, -0.3),
        "fov_shift_x": _uniform(rng, -1.0, 1.0),
    }


def _short_fov(rng: np.random.Generator) -> Overrides:
    size = int(rng.choice([192, 224, 256]))
    spacing = round(_uniform(rng, 0.7, 0.9), 4)
    return {"missing": ("L1",), "rows": size, "cols": size, "pixel_spacing_mm": (spacing, spacing)}


def _size(rng: np.random.Generator) -> Overrides:
    small = rng.random() < 0.5
    return {"scale": _uniform(rng, 0.8, 0.88) if small else _uniform(rng, 1.12, 1.2)}


def _spondylolisthesis(rng: np.random.Generator) -> Overrides:
    # Meyerding grade 1-2: up to 50 % of the ~40 mm body depth.
    return {"slip_level": str(rng.choice(["L4", "L5"])), "slip_mm": _uniform(rng, 5.0, 18.0)}


def _wedge_fracture(rng: np.random.Generator) -> Overrides:
    return {
        "fracture_level": str(rng.choice(["T12", "L1", "L2", "L3", "L4"])),
        "fracture_fraction": _uniform(rng, 0.25, 0.5),
    }


def _disc_collapse(rng: np.random.Generator) -> Overrides:
    return {"collapsed_disc": str(rng.choice(["L2", "L3", "L4", "L5"]))}


def _out_of_plane(rng: np.random.Generator) -> Overrides:
    return {
        "lateral_bow_mm": float(rng.choice([-1.0, 1.0]) * _uniform(rng, 6.0, 12.0)),
        "lateral_drift_mm": _uniform(rng, -4.0, 4.0),
    }


def _six_lumbar(rng: np.random.Generator) -> Overrides:
    return {"lumbar_count": 6}


FAMILIES: dict[str, Callable[[np.random.Generator], Overrides]] = {
    "t1": _t1,
    "stir": _stir,
    "water": _water,
    "fat": _fat,
    "long-fov": _long_fov,
    "short-fov": _short_fov,
    "size": _size,
    "spondylolisthesis": _spondylolisthesis,
    "wedge-fracture": _wedge_fracture,
    "disc-collapse": _disc_collapse,
    "out-of-plane": _out_of_plane,
    "six-lumbar": _six_lumbar,
}


def family_overrides(family: str, rng: np.random.Generator) -> Overrides:
    """PhantomParams overrides for one case of ``family`` (see the module docstring)."""
    try:
        draw = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}") from None
    return draw(rng)
