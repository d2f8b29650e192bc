import pandas as pd

from labeling_pipeline.corrections import append_corrections, make_correction, read_corrections
from labeling_pipeline.corrections.publish import export_coco_dataset, publish_curated_partition
from labeling_pipeline.labels.catalog import read_catalog
from labeling_pipeline.labels.sr import read_sr_landmarks


def test_partition_gets_curated_rows_and_one_sr_per_image(reviewable):
    study = reviewable.studies[1]
    labels = reviewable.labels()
    labels = labels[labels["partition_key"] == study.partition_key]
    l4 = labels[labels["landmark"] == "L4"].iloc[0].to_dict()
    x, y = study.truth["L4"]
    append_corrections(reviewable.corrections_dir, [make_correction(l4, "move", "ann", x=x, y=y)])
    catalog = read_catalog(reviewable.output_dir / "catalog.parquet")
    out = reviewable.output_dir

    def publish():
        return publish_curated_partition(
            study.partition_key,
            labels,
            read_corrections(reviewable.corrections_dir),
            catalog,
            reviewable.data_dir,
            out / "curated",
            out / "sr",
        )

    result = publish()
    assert result.path == out / "curated" / f"{study.partition_key}.parquet"
    assert result.counts()["corrected"] == 1 and result.counts()["needs_review"] == 1
    assert result.reviewed() == 1 and result.sr_written == 1
    (sr_path,) = result.sr_paths
    statuses = {lm.name: lm.status for lm in read_sr_landmarks(sr_path)}
    assert statuses["L4"] == "corrected" and statuses["L5"] == "needs_review"
    assert publish().sr_written == 0  # nothing changed: the SR stays as it is
    on_disk = pd.read_parquet(result.path)
    assert on_disk.set_index("landmark").loc["L4", "status"] == "corrected"

    coco = export_coco_dataset(
        result.curated, catalog, reviewable.data_dir, out / "coco" / "keypoints.json"
    )
    assert coco["images"][0]["file_name"] == f"images/{study.sop_instance_uid}.png"
    assert (out / "coco" / coco["images"][0]["file_name"]).is_file()
