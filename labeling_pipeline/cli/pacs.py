"""What a study's run stored on the DICOMweb server (``pacs_structured_reports``' metadata)."""

from __future__ import annotations

from typing import Any

SR_STORE_NODE = "pacs_structured_reports"
SR_STORE_COUNTS = ("stored", "already_stored", "failed", "not_from_server")


def sr_store_counts(result: Any) -> dict[str, int]:
    """SRs stored, already stored, failed and not from the server in one ``label_study_job``
    result; empty when the write-back is off (the asset is then not materialized)."""
    materializations = result.asset_materializations_for_node(SR_STORE_NODE)
    if not materializations:
        return {}
    metadata = materializations[0].metadata
    return {
        name: int(metadata[f"sr_{name}"].value)
        for name in SR_STORE_COUNTS
        if f"sr_{name}" in metadata
    }
