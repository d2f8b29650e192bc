"""The progress of launched runs, read from the instance's event log look by look."""

import dagster as dg

from labeling_pipeline.cli.launch import LabelledSoFar


def _batch(instance: dg.DagsterInstance, keys: list[str], images: dict[str, int]) -> None:
    """What a label run records: per study, label_dataset (with the whole batch's metadata)
    and then curated_labels."""
    studies = dg.MetadataValue.json({key: {"images": images[key]} for key in keys})
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("label_dataset", partition=key, metadata={"studies": studies})
        )
    for key in keys:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("curated_labels", partition=key)
        )


def test_progress_counts_each_study_once_and_reads_only_new_records(monkeypatch):
    instance = dg.DagsterInstance.ephemeral()
    _batch(instance, ["earlier"], {"earlier": 9})  # before the command started: not counted
    cursor = instance.event_log_storage.get_maximum_record_id() or 0
    labelled = LabelledSoFar({"a", "b", "c"}, cursor)
    assert labelled.update(instance) == (set(), 0)

    _batch(instance, ["a", "b"], {"a": 2, "b": 1})
    _batch(instance, ["outside"], {"outside": 5})  # another command's study
    assert labelled.update(instance) == ({"a", "b"}, 3)

    fetched: list[int] = []
    original = instance.fetch_materializations

    def counting(records_filter, *args, **kwargs):
        result = original(records_filter, *args, **kwargs)
        fetched.append(len(result.records))
        return result

    monkeypatch.setattr(instance, "fetch_materializations", counting)
    # A study labelled again (a retry) is still one study; a look reads only the new records.
    _batch(instance, ["b", "c"], {"b": 1, "c": 4})
    assert labelled.update(instance) == ({"a", "b", "c"}, 7)
    assert sum(fetched) == 4
    fetched.clear()
    assert labelled.update(instance) == ({"a", "b", "c"}, 7)
    assert sum(fetched) == 0
