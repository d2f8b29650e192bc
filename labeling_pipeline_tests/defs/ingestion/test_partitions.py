"""How study partitions are registered and selected: grouped by source, and the text that
selects one source's studies in the UI's partition box."""

import pandas as pd
import pytest

from labeling_pipeline.defs.ingestion.partitions import (
    SOURCE_ORDER,
    STUDIES_PER_RUN_ENV,
    _studies_per_run,
    registration_order,
    selection_text,
    study_sources,
)


def _catalog(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["partition_key", "source", "outcome"])


def test_studies_are_registered_by_source_then_date() -> None:
    catalog = _catalog(
        [
            ("incoming-20260105-aaaaaaaa", "incoming", "labelled"),
            ("archive-20250101-bbbbbbbb", "archive", "labelled"),
            ("archive-20260101-cccccccc", "archive", "labelled"),
            ("incoming-20240101-dddddddd", "incoming", "labelled"),
            ("dicomweb-20270101-99999999", "dicomweb", "labelled"),
            ("", "incoming", "rejected"),  # a file that is no study
            ("archive-20230101-eeeeeeee", "archive", "rejected"),  # nothing to label
            # files in both folders: one study, keyed incoming by the scan (automation watches it)
            ("incoming-20220101-ffffffff", "archive", "labelled"),
            ("incoming-20220101-ffffffff", "incoming", "labelled"),
        ]
    )
    assert study_sources(catalog)["incoming-20220101-ffffffff"] == "incoming"
    assert study_sources(catalog)["dicomweb-20270101-99999999"] == "dicomweb"
    # Archive, then the server's, then incoming: the keys' own order, as SOURCE_ORDER's is.
    assert list(SOURCE_ORDER) == sorted(SOURCE_ORDER)
    assert registration_order(catalog) == [
        "archive-20250101-bbbbbbbb",
        "archive-20260101-cccccccc",
        "dicomweb-20270101-99999999",
        "incoming-20220101-ffffffff",
        "incoming-20240101-dddddddd",
        "incoming-20260105-aaaaaaaa",
    ]


def test_selection_text_uses_ranges_of_the_instance_order() -> None:
    ordered = ["a1", "i1", "i2", "a2", "a3", "a4", "i3"]
    assert selection_text(ordered, {"a1", "a2", "a3", "a4"}) == "a1, [a2...a4]"
    assert selection_text(ordered, {"i1", "i2", "i3"}) == "[i1...i2], i3"
    assert selection_text(ordered, set()) == ""


def test_studies_per_run_comes_from_the_environment_or_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv(STUDIES_PER_RUN_ENV, raising=False)
    assert _studies_per_run() == 128
    monkeypatch.setenv(STUDIES_PER_RUN_ENV, " 32 ")
    assert _studies_per_run() == 32
    for bad in ("0", "-4", "many"):
        monkeypatch.setenv(STUDIES_PER_RUN_ENV, bad)
        with pytest.raises(ValueError, match="LABELING_STUDIES_PER_RUN"):
            _studies_per_run()
