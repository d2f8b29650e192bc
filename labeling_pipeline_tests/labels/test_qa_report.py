"""The dataset QA report: plots per pair, outliers for this dataset, flag rates by group."""

import numpy as np
import pandas as pd

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.labels.qa_report import image_headers, write_qa_report

VERTEBRAE = ("S1", "L5", "L4", "L3", "L2", "L1")  # caudal to cranial


def _dataset(squeezed_image: int = 3, images: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for image in range(images):
        y = 220.0
        for index, name in enumerate(VERTEBRAE):
            step = 36.0 + rng.normal(0, 1.0)
            if image == squeezed_image and name == "L2":
                step = 28.0  # inside the domain's 26..52 mm, far from this dataset's ~36 mm
            if index:
                y -= step
            status = "needs_review" if (image >= 7 and name == "L1") else "ok"
            rows.append(
                {
                    "study_uid": f"1.{image}",
                    "sop_instance_uid": f"1.{image}.1",
                    "partition_key": f"2026{(image % 2) + 1:02d}01-0000000{image}",
                    "study_date": f"2026{(image % 2) + 1:02d}01",
                    "landmark": name,
                    "kind": "vertebra",
                    "x": 100.0,
                    "y": y,
                    "x_mm": 100.0,
                    "y_mm": y,
                    "status": status,
                    "template": "default",  # a column the report does not know
                }
            )
    return pd.DataFrame(rows)


def test_report_shows_outliers_inside_the_domain_and_flag_rates(tmp_path):
    frame = _dataset()
    domain = load_domain("lumbar")
    headers = pd.DataFrame(
        {
            "sop_instance_uid": sorted(set(frame["sop_instance_uid"])),
            "site": "",
            "scanner": ["Acme One"] * 7 + ["Acme Two"] * 2,
            "sequence": "SAG T2",
        }
    )
    report = write_qa_report(frame, tmp_path / "qa", headers, domain.to_ranges(), domain.order)
    assert report.path == tmp_path / "qa" / "report.html"
    outliers = report.outliers
    assert list(zip(outliers["sop_instance_uid"], outliers["pair"], strict=True)) == [
        ("1.3.1", "L3-L2")
    ]
    assert len(report.plots) == 5 and all(p.stat().st_size > 1000 for p in report.plots)
    scanners = report.rates["scanner"].set_index("scanner")
    assert scanners.loc["Acme Two", "flagged_share"] == 1 / 6  # a new scanner stands out
    assert scanners.loc["Acme One", "flagged"] == 0
    assert report.rates["site"]["site"].tolist() == ["(not recorded)"]
    assert report.rates["study_month"]["study_month"].tolist() == ["202601", "202602"]
    page = report.path.read_text()
    assert "plots/steps_L3-L2.png" in page and "Acme Two" in page and "1.3.1" in page


def test_headers_come_from_the_labelled_files(reviewable):
    catalog = pd.read_parquet(reviewable.output_dir / "catalog.parquet")
    headers = image_headers(catalog, reviewable.data_dir)
    assert len(headers) == 2
    assert set(headers["sequence"]) == {"SAG T2 TSE"}
    assert set(headers["scanner"]) == {"labeling_pipeline synthetic phantom"}
