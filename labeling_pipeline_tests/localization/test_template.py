"""The template's landmark file (``landmarks.json``): parsing and its errors."""

from __future__ import annotations

import json

import pytest

from labeling_pipeline.localization.template import (
    TemplateError,
    TemplateLandmark,
    load_template_landmarks,
    parse_template_landmarks,
)


def document(**changes) -> dict:
    doc = {
        "region": "lumbar",
        "landmarks": [
            {"name": "L5", "kind": "vertebra", "x": 107.95, "y": 185.85},
            {"name": "L4", "kind": "vertebra", "x": 103, "y": 151},
            {"name": "L4-L5", "kind": "disc", "x": "105.77", "y": 168.49},
        ],
    }
    doc.update(changes)
    return doc


def test_a_valid_document_keeps_order_and_converts_numbers():
    template = parse_template_landmarks(document())
    assert template.region == "lumbar"
    assert template.names() == ["L5", "L4", "L4-L5"]
    assert template.landmarks[0] == TemplateLandmark("L5", "vertebra", 107.95, 185.85)
    # Numbers given as integers or numeric strings become floats (x = column, y = row).
    assert template.by_name()["L4"].x == 103.0 and isinstance(template.by_name()["L4"].x, float)
    assert template.by_name()["L4-L5"].x == 105.77


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([{"region": "lumbar"}], "JSON object"),
        ("lumbar", "JSON object"),
        (None, "JSON object"),
        ({"landmarks": document()["landmarks"]}, "'region'"),
        (document(region=""), "'region'"),
        (document(region=3), "'region'"),
        (document(landmarks=[]), "non-empty 'landmarks'"),
        (document(landmarks={"L5": {}}), "non-empty 'landmarks'"),
        ({"region": "lumbar"}, "non-empty 'landmarks'"),
        (
            document(landmarks=[{"name": "L5", "kind": "bone", "x": 1, "y": 2}]),
            "kind 'bone'",
        ),
        (
            document(
                landmarks=[
                    {"name": "L5", "kind": "vertebra", "x": 1, "y": 2},
                    {"name": "L4", "kind": "vertebra", "x": 1, "y": 9},
                    {"name": "L5", "kind": "vertebra", "x": 3, "y": 4},
                ]
            ),
            "twice: ['L5']",
        ),
        (
            document(landmarks=[{"name": "L5", "kind": "vertebra", "x": "left", "y": 2}]),
            "landmark #0",
        ),
        (document(landmarks=[{"name": "L5", "kind": "vertebra", "x": None, "y": 2}]), "numbers"),
        (document(landmarks=[{"name": "L5", "kind": "vertebra", "y": 2}]), "landmark #0"),
        (document(landmarks=[{"kind": "vertebra", "x": 1, "y": 2}]), "landmark #0"),
        (document(landmarks=[{"name": "L5", "kind": "vertebra", "x": 1, "y": 2}, 7]), "#1"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(doc, message):
    with pytest.raises(TemplateError) as caught:
        parse_template_landmarks(doc)
    assert message in str(caught.value)


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(document()))
    assert load_template_landmarks(path) == parse_template_landmarks(document())


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(TemplateError, match="not found"):
        load_template_landmarks(tmp_path / "absent.json")


def test_load_reports_invalid_json(tmp_path):
    path = tmp_path / "landmarks.json"
    path.write_text('{"region": "lumbar", "landmarks": [')
    with pytest.raises(TemplateError, match="not valid JSON"):
        load_template_landmarks(path)


def test_load_validates_what_it_read(tmp_path):
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(document(landmarks=[])))
    with pytest.raises(TemplateError, match="non-empty"):
        load_template_landmarks(path)
