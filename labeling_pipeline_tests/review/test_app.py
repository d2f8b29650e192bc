"""The review app over HTTP: a real server on 127.0.0.1 and a free port, in a thread."""

import json
import urllib.error
import urllib.request
from email.message import Message

import numpy as np
import pytest

from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.localization.template import load_template_landmarks
from labeling_pipeline.review import ReviewServer


def _get(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _post(url: str, body: object, raw: bool = False) -> tuple[int, dict]:
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/octet-stream" if raw else "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server(reviewable):
    rebuilt = []

    def on_saved(data_dir):
        rebuilt.append(data_dir)
        return "template reference rebuilt"

    with ReviewServer(reviewable.data_dir, reviewable.output_dir, on_template_saved=on_saved) as s:
        s.rebuilt = rebuilt
        assert s.host == "127.0.0.1"
        yield s


def test_pages_queue_image_and_pixels(server, reviewable):
    status, _, page = _get(server.url + "/")
    assert status == 200 and b"Vertebra label review" in page
    assert _get(server.url + "/static/review.js")[0] == 200
    _, _, body = _get(server.url + "/api/queue")
    queue = json.loads(body)
    assert [i["partition_key"] for i in queue["images"]] == [
        s.partition_key for s in reviewable.studies
    ]
    assert "corrected" in queue["filters"]["statuses"]
    sop = reviewable.studies[0].sop_instance_uid
    _, _, body = _get(f"{server.url}/api/images/{sop}")
    detail = json.loads(body)
    assert detail["rows"] == 256 and len(detail["landmarks"]) == 11
    s1 = next(lm for lm in detail["landmarks"] if lm["landmark"] == "S1")
    assert s1["x"] is None and s1["status"] == "needs_review"
    status, headers, raw = _get(f"{server.url}/api/sources/{sop}/pixels")
    assert status == 200 and int(headers["X-Rows"]) == 256
    pixels = np.frombuffer(raw, dtype="<f4").reshape(256, int(headers["X-Columns"]))
    expected = read_label_image(reviewable.data_dir / "incoming" / "study_0" / "IM0001.dcm")
    np.testing.assert_array_equal(pixels, expected.pixels)
    assert _get(f"{server.url}/api/images/1.2.3")[0] == 404
    assert _get(f"{server.url}/api/sources/upload-zz/pixels")[0] == 404


def test_actions_are_recorded_and_errors_explained(server, reviewable):
    study = reviewable.studies[1]
    url = f"{server.url}/api/images/{study.sop_instance_uid}/actions"
    status, body = _post(
        url, {"reviewer": "", "actions": [{"landmark": "L4", "action": "confirm"}]}
    )
    assert status == 400 and "reviewer name" in body["error"]
    status, body = _post(url, {"reviewer": "ann", "actions": [{"landmark": "L4", "action": "fly"}]})
    assert status == 400 and "unknown review action" in body["error"]
    x, y = study.truth["L4"]
    status, body = _post(
        url,
        {
            "reviewer": "ann",
            "actions": [
                {"landmark": "L4", "action": "move", "x": x, "y": y},
                {"landmark": "L5", "action": "confirm"},
            ],
        },
    )
    assert status == 200 and body["recorded"] == 2
    statuses = {lm["landmark"]: lm["status"] for lm in body["image"]["landmarks"]}
    assert statuses["L4"] == "corrected" and statuses["L5"] == "confirmed"
    # No default template in this data directory: the decisions stand, the bank says why it
    # was not refreshed.
    assert "template bank not refreshed" in body["template_bank"]["error"]
    _, _, queue = _get(server.url + "/api/queue")
    assert [i["sop_instance_uid"] for i in json.loads(queue)["images"]] == [
        reviewable.studies[0].sop_instance_uid
    ]


def test_template_from_an_upload(server, reviewable):
    status, body = _post(server.url + "/api/template/upload", b"not a dicom file", raw=True)
    assert status == 422 and "not a usable DICOM image" in body["error"]
    dicom = (reviewable.data_dir / "incoming" / "study_1" / "IM0001.dcm").read_bytes()
    status, body = _post(server.url + "/api/template/upload", dicom, raw=True)
    assert status == 200 and body["rows"] == 256
    source = body["source"]
    assert _get(f"{server.url}/api/sources/{source}/pixels")[0] == 200
    _, _, info = _get(server.url + "/api/template")
    info = json.loads(info)
    assert info["current"] is None and "lumbar" in info["regions"]
    truth = reviewable.studies[1].truth
    clicked = [{"name": n, "x": truth[n][0], "y": truth[n][1]} for n in ("L2", "L2-L3", "L3")]
    status, body = _post(
        server.url + "/api/template", {"source": source, "region": "lumbar", "landmarks": clicked}
    )
    assert status == 200, body
    assert body["rebuild"] == "template reference rebuilt" and server.rebuilt
    template = load_template_landmarks(reviewable.data_dir / "template" / "landmarks.json")
    assert template.names() == ["L2", "L2-L3", "L3"]
    assert (reviewable.data_dir / "template" / "template.dcm").read_bytes() == dicom
    status, body = _post(
        server.url + "/api/template",
        {"source": source, "region": "lumbar", "landmarks": [{"name": "L2", "x": "a", "y": 1}]},
    )
    assert status == 400


def test_a_fully_reviewed_image_joins_the_template_bank(server, reviewable):
    template_dir = reviewable.data_dir / "template"
    template_dir.mkdir()
    (template_dir / "landmarks.json").write_text(
        json.dumps(
            {"region": "lumbar", "landmarks": [{"name": "L1", "kind": "vertebra", "x": 1, "y": 1}]}
        )
    )
    study = reviewable.studies[1]  # L4 and L5 flagged, the rest ok
    url = f"{server.url}/api/images/{study.sop_instance_uid}/actions"
    x, y = study.truth["L4"]
    status, body = _post(
        url, {"reviewer": "ann", "actions": [{"landmark": "L4", "action": "move", "x": x, "y": y}]}
    )
    assert status == 200 and body["template_bank"] == {"entries": 0, "problems": []}
    status, body = _post(
        url, {"reviewer": "ann", "actions": [{"landmark": "L5", "action": "confirm"}]}
    )
    assert status == 200 and body["template_bank"] == {"entries": 1, "problems": []}
    [entry] = (reviewable.output_dir / "template_bank").glob("reviewed-*")
    landmarks = load_template_landmarks(entry / "landmarks.json")
    assert (landmarks.by_name()["L4"].x, landmarks.by_name()["L4"].y) == (
        pytest.approx(x, abs=1e-3),
        pytest.approx(y, abs=1e-3),
    )
