"""Domain knowledge: the order of landmarks and their reference distances and angles."""

from labeling_pipeline.anatomy.domain import (
    DomainError,
    DomainKnowledge,
    PairRange,
    SearchGrowth,
    domain_source,
    load_domain,
)

__all__ = [
    "DomainError",
    "DomainKnowledge",
    "PairRange",
    "SearchGrowth",
    "domain_source",
    "load_domain",
]
