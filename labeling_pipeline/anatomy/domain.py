"""Load and validate the reference spatial information of a spine region (``<region>.yaml``).

Conventions: positions are (x, y) = (column, row); distances are in mm between vertebral-body
centres; the angle of a step from a caudal landmark to the cranial one is measured against the
image's upward direction (-y), in degrees, positive towards +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGED_DIR = Path(__file__).resolve().parent


class DomainError(ValueError):
    """The domain-knowledge file is missing or inconsistent."""


@dataclass(frozen=True)
class PairRange:
    """Acceptable step from ``caudal`` to the adjacent ``cranial`` vertebra."""

    caudal: str
    cranial: str
    min_mm: float
    max_mm: float
    min_deg: float
    max_deg: float

    @property
    def name(self) -> str:
        return f"{self.caudal}-{self.cranial}"

    @property
    def typical_mm(self) -> float:
        return 0.5 * (self.min_mm + self.max_mm)

    def accepts(self, distance_mm: float, angle_deg: float) -> bool:
        """The spatial accuracy criterion of process 900."""
        return (
            self.min_mm <= distance_mm <= self.max_mm and self.min_deg <= angle_deg <= self.max_deg
        )


@dataclass(frozen=True)
class SearchGrowth:
    """Growing search region (process 900): radius in mm from start, by step, up to limit."""

    start_mm: float
    step_mm: float
    limit_mm: float

    def radii(self) -> list[float]:
        count = int(math.floor((self.limit_mm - self.start_mm) / self.step_mm + 1e-9)) + 1
        return [self.start_mm + i * self.step_mm for i in range(max(count, 1))]


@dataclass(frozen=True)
class DomainKnowledge:
    """Reference spatial information for one region (lumbar, cervical)."""

    region: str
    order: tuple[str, ...]  # vertebrae, caudal to cranial
    discs: dict[str, tuple[str, str]]  # disc name -> (cranial vertebra, caudal vertebra)
    first_landmark: str
    default_search_region: tuple[tuple[float, float], tuple[float, float]]  # x, y fractions
    pairs: dict[tuple[str, str], PairRange]  # (caudal, cranial) -> range
    max_turn_deg: float
    search_growth: SearchGrowth
    # Vertebrae unlike their neighbours (the sacrum, C2): the count of levels is anchored on
    # them, since the vertebrae between look alike.
    anchors: tuple[str, ...] = ()

    def pair(self, first: str, second: str) -> PairRange | None:
        """The range between two adjacent vertebrae, in either order."""
        return self.pairs.get((first, second)) or self.pairs.get((second, first))

    def rank(self, name: str) -> int:
        """Position of a vertebra in caudal-to-cranial order."""
        return self.order.index(name)

    def ordered(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """The vertebrae among ``names``, caudal to cranial; unknown names are dropped."""
        return sorted((n for n in names if n in self.order), key=self.order.index)

    def to_ranges(self) -> dict[str, tuple[float, float, float, float]]:
        """Plain ``{"caudal-cranial": (min_mm, max_mm, min_deg, max_deg)}`` for QA code."""
        return {p.name: (p.min_mm, p.max_mm, p.min_deg, p.max_deg) for p in self.pairs.values()}


def _pair_of(key: str, order: tuple[str, ...]) -> tuple[str, str]:
    caudal, _, cranial = key.partition("-")
    if caudal not in order or cranial not in order:
        raise DomainError(f"pair {key!r} names a vertebra outside 'order'")
    if order.index(cranial) != order.index(caudal) + 1:
        raise DomainError(f"pair {key!r} is not an adjacent caudal-cranial pair of 'order'")
    return caudal, cranial


def _finite(value: object, what: str) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise DomainError(f"{what} must be a finite number, got {value!r}")
    return number


def _range(values: object, what: str) -> tuple[float, float]:
    """A ``[min, max]`` range of finite numbers with min < max (an empty range, such as
    ``[0, 0]``, would accept nothing and is a mistake in the file)."""
    if not isinstance(values, list | tuple) or len(values) != 2:
        raise DomainError(f"{what} must be a [min, max] list, got {values!r}")
    low, high = _finite(values[0], what), _finite(values[1], what)
    if low > high:
        raise DomainError(f"{what} has min {low} above max {high}")
    if low == high:
        raise DomainError(f"{what} is empty ([{low:g}, {high:g}]): min must be below max")
    return low, high


def parse_domain(document: dict, source: str = "<domain>") -> DomainKnowledge:
    """Validate a domain-knowledge document (the schema of ``lumbar.yaml``)."""
    try:
        region = str(document["region"])
        order = tuple(str(n) for n in document["order"])
        discs = {str(k): (str(v[0]), str(v[1])) for k, v in document.get("discs", {}).items()}
        first = str(document["first_landmark"])
        region_box = document["default_search_region"]
        box = (
            _range(region_box["x"], "default_search_region.x"),
            _range(region_box["y"], "default_search_region.y"),
        )
        pairs: dict[tuple[str, str], PairRange] = {}
        for key, spec in document["pairs"].items():
            caudal, cranial = _pair_of(str(key), order)
            min_mm, max_mm = _range(spec["distance_mm"], f"{key}.distance_mm")
            min_deg, max_deg = _range(spec["angle_deg"], f"{key}.angle_deg")
            pairs[(caudal, cranial)] = PairRange(caudal, cranial, min_mm, max_mm, min_deg, max_deg)
        growth_doc = document["search_growth"]
        growth = SearchGrowth(
            _finite(growth_doc["start_mm"], "search_growth.start_mm"),
            _finite(growth_doc["step_mm"], "search_growth.step_mm"),
            _finite(growth_doc["limit_mm"], "search_growth.limit_mm"),
        )
        max_turn = _finite(document["max_turn_deg"], "max_turn_deg")
        anchors = tuple(str(n) for n in document.get("anchors", ()))
    except (KeyError, TypeError, IndexError, ValueError) as error:
        if isinstance(error, DomainError):
            raise DomainError(f"{source}: {error}") from None
        raise DomainError(f"{source}: missing or malformed field: {error}") from error
    if not 0 < max_turn <= 180:
        raise DomainError(f"{source}: max_turn_deg must be in (0, 180], got {max_turn:g}")
    if first not in order:
        raise DomainError(f"{source}: first_landmark {first!r} is not in 'order'")
    missing = [f"{a}-{b}" for a, b in zip(order, order[1:], strict=False) if (a, b) not in pairs]
    if missing:
        raise DomainError(f"{source}: no distance/angle range for adjacent pairs {missing}")
    for disc, (upper, lower) in discs.items():
        if upper not in order or lower not in order:
            raise DomainError(f"{source}: disc {disc!r} lies between unknown vertebrae")
    if growth.step_mm <= 0 or growth.start_mm <= 0 or growth.limit_mm < growth.start_mm:
        raise DomainError(f"{source}: search_growth needs 0 < start <= limit and step > 0")
    unknown = [n for n in anchors if n not in order]
    if unknown:
        raise DomainError(f"{source}: anchors {unknown} are not in 'order'")
    return DomainKnowledge(region, order, discs, first, box, pairs, max_turn, growth, anchors)


def load_domain(region: str, domain_dir: Path | None = None) -> DomainKnowledge:
    """The domain knowledge of ``region``: ``domain_dir/<region>.yaml`` (the data directory's
    copy, which users may edit). A ``domain_dir`` that exists without that file is an error,
    not a silent fallback; only without a ``domain_dir`` (``None`` or no such folder) is the
    packaged default used (see :func:`domain_source`)."""
    if domain_dir is not None and Path(domain_dir).is_dir():
        path = Path(domain_dir) / f"{region}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PACKAGED_DIR.glob("*.yaml"))
            raise DomainError(
                f"no domain knowledge for region {region!r} in the data directory's domain/ "
                f"(expected {path.name}); packaged regions to copy from: {known}"
            )
        candidates = [path]
    else:
        candidates = [PACKAGED_DIR / f"{region}.yaml"]
    for path in candidates:
        if path.is_file():
            try:
                document = yaml.safe_load(path.read_text())
            except yaml.YAMLError as error:
                raise DomainError(f"{path}: not valid YAML: {error}") from error
            if not isinstance(document, dict):
                raise DomainError(f"{path}: missing or malformed document (not a YAML mapping)")
            knowledge = parse_domain(document, str(path))
            if knowledge.region != region:
                raise DomainError(f"{path} describes region {knowledge.region!r}, not {region!r}")
            return knowledge
    known = sorted(p.stem for p in PACKAGED_DIR.glob("*.yaml"))
    raise DomainError(f"no domain knowledge for region {region!r}; packaged regions: {known}")


def domain_source(region: str, domain_dir: Path | None = None) -> str:
    """Where :func:`load_domain` takes the region's knowledge from: ``data`` or ``packaged``."""
    return "data" if domain_dir is not None and Path(domain_dir).is_dir() else "packaged"
