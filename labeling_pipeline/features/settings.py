"""Feature settings: what must match between the template's features and a study's."""

from __future__ import annotations

import json
from typing import Any

#: Keys that describe where or how features were computed but not what they mean: a checkpoint
#: at another path with the same sha256, or another device, gives comparable features.
INFORMATIONAL_KEYS = frozenset({"weights_source", "device"})


class FeatureSettingsMismatch(ValueError):
    """Two feature maps were computed with different models, weights, layers or preparation."""


def comparable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without informational keys, JSON-normalised (tuples become lists)."""
    trimmed = {k: v for k, v in settings.items() if k not in INFORMATIONAL_KEYS}
    return json.loads(json.dumps(trimmed, sort_keys=True, default=str))


def canonical_json(settings: dict[str, Any]) -> str:
    """Stable text of the comparable settings (for hashing)."""
    return json.dumps(comparable_settings(settings), sort_keys=True, separators=(",", ":"))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}{key}"
            if key not in a:
                out.append(f"{name}: absent vs {b[key]!r}")
            elif key not in b:
                out.append(f"{name}: {a[key]!r} vs absent")
            else:
                out.extend(_differences(a[key], b[key], f"{name}."))
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} vs {b!r}"]


def check_compatible(a_settings: dict[str, Any], b_settings: dict[str, Any]) -> None:
    """Raise :class:`FeatureSettingsMismatch` naming every differing setting, unless the two
    settings describe the same features (model, weights sha256, layers, stride, preparation...).
    The weights' location and the device are ignored."""
    diffs = _differences(comparable_settings(a_settings), comparable_settings(b_settings))
    if diffs:
        raise FeatureSettingsMismatch(
            "feature settings differ (template and study features must come from the same "
            "extractor and preparation): " + "; ".join(diffs)
        )
