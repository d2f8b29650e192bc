"""Contrast variants of an image, so that one template's references hold across sequences.

A T2 template must label T1, STIR and water/fat images, and the other way round. What stays
is anatomy (shapes and edges); what changes is which tissue is bright. The template's
reference features are therefore averaged over copies of the template with the intensities
remapped: inverted (fluid and discs dark, as on T1) and bent by gamma (fat or marrow
brighter or darker against the rest). Geometry is untouched, so every variant's features lie
on the same grid as the original's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from labeling_pipeline.imaging.image import LabelImage

#: Remaps of the normalised intensity t in [0, 1]: (name, function). The original is not
#: listed; callers keep it.
CONTRAST_VARIANTS: tuple[str, ...] = ("inverted", "gamma-0.5", "gamma-2", "inverted-gamma-2")


def _remap(t: np.ndarray, variant: str) -> np.ndarray:
    if variant == "inverted":
        return 1.0 - t
    if variant == "gamma-0.5":
        return np.sqrt(t)
    if variant == "gamma-2":
        return t * t
    if variant == "inverted-gamma-2":
        return (1.0 - t) ** 2
    raise ValueError(f"unknown contrast variant {variant!r}; choose from {CONTRAST_VARIANTS}")


def contrast_variant(image: LabelImage, variant: str) -> LabelImage:
    """``image`` with its intensities remapped by ``variant`` (see :data:`CONTRAST_VARIANTS`).

    Intensities are normalised between the 0.5th and 99.5th percentile (clipped), remapped and
    scaled back to that range; a MONOCHROME1 image is first turned into MONOCHROME2 so that
    "inverted" means the same on every image. The DICOM window no longer applies and is dropped.
    """
    pixels = np.asarray(image.pixels, dtype=np.float32)
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        raise ValueError(f"image {image.sop_instance_uid}: no finite pixel values")
    low, high = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    span = max(high - low, 1e-6)
    t = np.clip((np.nan_to_num(pixels, nan=low) - low) / span, 0.0, 1.0)
    if image.photometric_interpretation == "MONOCHROME1":
        t = 1.0 - t
    remapped = (low + _remap(t, variant) * span).astype(np.float32)
    return replace(
        image,
        pixels=remapped,
        photometric_interpretation="MONOCHROME2",
        window_center=None,
        window_width=None,
    )


def contrast_variants(
    image: LabelImage, variants: tuple[str, ...] = CONTRAST_VARIANTS
) -> list[LabelImage]:
    """One remapped copy of ``image`` per variant name, in order."""
    return [contrast_variant(image, v) for v in variants]
