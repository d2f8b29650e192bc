"""The questions asked of the catalog table: studies to label, their images, their digest and
the per-study and per-reason summaries."""

from __future__ import annotations

import pandas as pd

from labeling_pipeline.imaging.dicom import (
    CatalogEntry,
    CatalogOutcome,
    RejectionReason,
    catalog_to_frame,
    labelled_partition_keys,
    labelled_rows,
    rejection_summary,
    study_digest,
    study_summary,
)

A, B = "incoming-20240101-aaaaaaaa", "incoming-20240202-bbbbbbbb"


def _catalog() -> pd.DataFrame:
    def entry(path: str, key: str, outcome: str, reason: str = "", sop: str = "") -> CatalogEntry:
        source = path.split("/")[0]
        return CatalogEntry(
            path,
            source,
            10,
            path[-1] * 64,
            outcome,
            reason,
            partition_key=key,
            sop_instance_uid=sop,
        )

    return catalog_to_frame(
        [
            entry("incoming/a/2.dcm", A, CatalogOutcome.LABELLED, sop="1.2"),
            entry("archive/a/1.dcm", A, CatalogOutcome.ACCEPTED, sop="1.1"),
            entry("incoming/a/3.dcm", A, CatalogOutcome.REJECTED, RejectionReason.DUPLICATE),
            entry("incoming/b/1.dcm", B, CatalogOutcome.REJECTED, RejectionReason.TRUNCATED),
            entry("incoming/junk.txt", "", CatalogOutcome.REJECTED, RejectionReason.NOT_DICOM),
            entry("incoming/more.txt", "", CatalogOutcome.REJECTED, RejectionReason.NOT_DICOM),
        ]
    )


def test_only_studies_with_a_labelled_image_are_partitions() -> None:
    catalog = _catalog()
    assert labelled_partition_keys(catalog) == [A]
    assert labelled_rows(catalog, A)["path"].tolist() == ["incoming/a/2.dcm"]
    assert labelled_rows(catalog, B).empty


def test_codes_are_stored_as_plain_strings() -> None:
    catalog = _catalog()
    assert {type(value) for value in catalog["outcome"]} == {str}
    assert set(catalog["reason_code"]) == {"", "duplicate", "truncated", "not_dicom"}


def test_study_digest_changes_only_with_the_study_files() -> None:
    catalog = _catalog()
    digest = study_digest(catalog, A)
    assert digest == study_digest(catalog.sample(frac=1, random_state=0), A)  # order-free
    other_study = catalog.copy()
    other_study.loc[other_study["path"] == "incoming/b/1.dcm", "sha256"] = "0" * 64
    assert study_digest(other_study, A) == digest
    replaced = catalog.copy()
    replaced.loc[replaced["path"] == "incoming/a/2.dcm", "sha256"] = "0" * 64
    assert study_digest(replaced, A) != digest
    assert study_digest(catalog[catalog["path"] != "archive/a/1.dcm"], A) != digest


def test_summaries_count_per_study_and_per_reason() -> None:
    catalog = _catalog()
    studies = study_summary(catalog).set_index("partition_key")
    assert studies.loc[A].to_dict() == {
        "source": "archive,incoming",
        "files": 3,
        "labelled": 1,
        "rejected": 1,
    }
    assert studies.loc[B, "labelled"] == 0
    assert study_summary(catalog[catalog["partition_key"] == ""]).empty
    reasons = rejection_summary(catalog)
    assert reasons.to_dict("records")[0] == {"reason_code": "not_dicom", "files": 2}
    assert reasons["files"].sum() == 4
