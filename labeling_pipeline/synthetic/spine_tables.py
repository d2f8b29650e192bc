"""The drawn spine: segment names, which are labelled, and adult body sizes and angles."""

from __future__ import annotations

#: Every segment drawn, top to bottom. Only some of them are labelled.
VERTEBRAE: tuple[str, ...] = (
    "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5",
    "S1", "S2", "S3", "S4", "S5", "Co1", "Co2",
)  # fmt: skip
#: Vertebrae reported in the ground truth (S1 = centre of the first sacral body).
LABELLED_VERTEBRAE: tuple[str, ...] = ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
#: Discs reported in the ground truth, named "<upper>-<lower>".
LABELLED_DISCS: tuple[str, ...] = (
    "T11-T12", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1",
)  # fmt: skip

# Body height / depth (antero-posterior) in mm for scale 1, after published adult means
# (lumbar bodies 26-30 mm tall and 35-45 mm deep, lower thoracic a little smaller).
HEIGHT_MM = {
    "T9": 21.5, "T10": 22.5, "T11": 24.0, "T12": 25.5, "L1": 27.0, "L2": 28.0, "L3": 28.5,
    "L4": 28.5, "L5": 28.0, "S1": 27.0, "S2": 22.0, "S3": 18.0, "S4": 15.0, "S5": 12.0,
    "Co1": 10.0, "Co2": 8.0,
}  # fmt: skip
DEPTH_MM = {
    "T9": 29.0, "T10": 30.0, "T11": 31.5, "T12": 33.5, "L1": 35.5, "L2": 37.0, "L3": 38.5,
    "L4": 39.5, "L5": 40.5, "S1": 39.0, "S2": 30.0, "S3": 23.0, "S4": 18.0, "S5": 14.0,
    "Co1": 11.0, "Co2": 9.0,
}  # fmt: skip
# Height of the disc below each segment (mm); sacral/coccygeal ones are fused remnants.
DISC_BELOW_MM = {
    "T9": 5.0, "T10": 5.5, "T11": 6.0, "T12": 7.0, "L1": 8.5, "L2": 9.5, "L3": 10.0,
    "L4": 10.5, "L5": 10.0, "S1": 2.0, "S2": 1.6, "S3": 1.4, "S4": 1.2, "S5": 2.0, "Co1": 1.5,
}  # fmt: skip
# Direction of each body's axis (degrees from straight down; positive = the lower end turned
# towards +X, the back). Thoracolumbar kyphosis turns into lumbar lordosis and the sacrum turns
# sharply backwards at L5-S1. Lumbar values are scaled by the lordosis parameter.
AXIS_DEG = {
    "T9": -8.0, "T10": -11.0, "T11": -13.5, "T12": -15.5, "L1": -16.0, "L2": -13.0,
    "L3": -7.5, "L4": 0.0, "L5": 8.0,
}  # fmt: skip
# Sacral/coccygeal axis relative to L5 (degrees), before sacral_angle_deg is added.
# The sacrum leaves L5 steeply backwards (sacral slope ~40 deg) and curves forwards again
# towards the coccyx (sacral kyphosis, concave anteriorly).
SACRAL_REL_DEG = {
    "S1": 30.0, "S2": 28.0, "S3": 20.0, "S4": 8.0, "S5": -4.0, "Co1": -18.0, "Co2": -30.0,
}  # fmt: skip
# Wedge (posterior minus anterior height, mm): T12/L1 are slightly anteriorly wedged, L5 and S1
# posteriorly.
WEDGE_MM = {"T11": 1.0, "T12": 1.5, "L1": 1.2, "L4": -0.5, "L5": -2.0, "S1": -3.0}


def segment_names(lumbar_count: int = 5) -> tuple[str, ...]:
    """Every segment drawn, top to bottom; six lumbar vertebrae add "L6" above the sacrum."""
    if lumbar_count == 5:
        return VERTEBRAE
    split = VERTEBRAE.index("S1")
    return (*VERTEBRAE[:split], "L6", *VERTEBRAE[split:])


def labelled_vertebrae(lumbar_count: int = 5) -> tuple[str, ...]:
    """Vertebrae reported in the ground truth for ``lumbar_count`` lumbar vertebrae."""
    return tuple(n for n in segment_names(lumbar_count) if n in (*LABELLED_VERTEBRAE, "L6"))


def labelled_discs(lumbar_count: int = 5) -> tuple[str, ...]:
    """Discs reported in the ground truth, "<upper>-<lower>", top to bottom."""
    names = labelled_vertebrae(lumbar_count)
    return tuple(f"{a}-{b}" for a, b in zip(names, names[1:], strict=False))


def table_value(table: dict[str, float], name: str) -> float:
    """Anatomy table lookup; the transitional "L6" is drawn like L5."""
    return table["L5" if name == "L6" and name not in table else name]
