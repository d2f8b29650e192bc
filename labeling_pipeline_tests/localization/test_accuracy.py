"""Localization with the real feature extractor: the product's accuracy target on the real
lumbar MRI (``<repo>/../shared/realdata/lumbar_mri_dev``) and a small check on generated
phantoms. The extractor is loaded once for the module."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from labeling_pipeline.anatomy import load_domain
from labeling_pipeline.features.compute import compute_feature_maps
from labeling_pipeline.features.extractors import load_extractor
from labeling_pipeline.features.preprocess import PreparationSettings
from labeling_pipeline.imaging.dicom import read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.evaluation import score_image, summarize
from labeling_pipeline.localization.reference import build_template_reference
from labeling_pipeline.localization.search import Localizer, SearchSettings, localize
from labeling_pipeline.localization.template import (
    load_template_landmarks,
    parse_template_landmarks,
)
from labeling_pipeline.synthetic import generate_cases, make_phantom
from labeling_pipeline.synthetic.sample_data import TEMPLATE_LANDMARKS, template_params

REAL_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "lumbar_mri_dev"
IVD_DIR = REAL_DIR.parent / "lumbar_mri_ivd"


@pytest.fixture(scope="module")
def extractor():
    return load_extractor()


@pytest.fixture(scope="module")
def domain():
    return load_domain("lumbar")


@pytest.mark.slow
def test_chain_meets_the_accuracy_target_on_real_lumbar_mri(extractor, domain):
    if not (REAL_DIR / "truth.json").is_file():
        pytest.skip(f"real data not available at {REAL_DIR.resolve()}")
    truth = json.loads((REAL_DIR / "truth.json").read_text())
    entries = list(truth.values())
    images = [read_label_image(REAL_DIR / entry["file"], entry.get("frame")) for entry in entries]
    template_image = read_label_image(REAL_DIR / "template" / "template.dcm")
    template = load_template_landmarks(REAL_DIR / "template" / "landmarks.json")
    template_map, *maps = compute_feature_maps(
        [template_image, *images], extractor, PreparationSettings()
    )
    reference = build_template_reference(template_map, template, domain)
    outcomes = []
    for entry, image, fmap in zip(entries, images, maps, strict=True):
        vertebrae = {
            name: (p["x"], p["y"])
            for name, p in entry["landmarks"].items()
            if p["kind"] == "vertebra"
        }
        results = localize(fmap, reference, domain)  # default strategy: chain
        outcomes += score_image(entry["file"], results, vertebrae, image.pixel_spacing_mm)
    summary = summarize(outcomes)
    assert len(entries) == 9 and summary.vertebrae == 45
    assert summary.identified >= 0.97, summary
    assert summary.confidently_wrong <= 0.01, summary
    assert summary.ok_but_absent == 0, summary
    assert summary.mean_error_mm < 3.0, summary


def label_image(pixels: np.ndarray, spacing: tuple[float, float], number: int) -> LabelImage:
    return LabelImage(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.1.1",
        sop_instance_uid=f"1.2.826.0.1.3680043.8.498.1.1.{number}",
        study_date="",
        modality="MR",
        pixels=np.asarray(pixels, dtype=np.float32),
        pixel_spacing_mm=spacing,
    )


def test_chain_on_generated_phantoms_identifies_most_and_beats_plain(extractor, domain):
    template_phantom = make_phantom(template_params(seed=7))
    cases = generate_cases(4, seed=11)  # ordinary cases: no forced hard settings
    images = [
        label_image(p.pixels, p.pixel_spacing_mm, i)
        for i, p in enumerate([template_phantom, *cases])
    ]
    template_map, *maps = compute_feature_maps(images, extractor, PreparationSettings())
    template = parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": name, "kind": kind, "x": x, "y": y}
                for name in TEMPLATE_LANDMARKS
                for x, y, kind in [template_phantom.landmarks[name]]
            ],
        }
    )
    reference = build_template_reference(template_map, template, domain)
    summaries = {}
    for strategy in ("plain", "chain"):
        outcomes = []
        for i, (phantom, fmap) in enumerate(zip(cases, maps, strict=True)):
            truth = {
                n: (x, y) for n, (x, y, kind) in phantom.landmarks.items() if kind == "vertebra"
            }
            results = localize(fmap, reference, domain, SearchSettings(strategy=strategy))
            outcomes += score_image(f"case{i}", results, truth, phantom.pixel_spacing_mm)
        summaries[strategy] = summarize(outcomes)
    assert summaries["chain"].vertebrae >= 20
    assert summaries["chain"].identified >= 0.75, summaries
    assert summaries["chain"].identified >= summaries["plain"].identified, summaries
    assert summaries["chain"].confidently_wrong <= summaries["plain"].confidently_wrong, summaries


def phantom_template(phantom):
    """The template's landmarks (L1-L5, S1 and discs) read from a phantom's ground truth."""
    return parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": name, "kind": kind, "x": x, "y": y}
                for name in TEMPLATE_LANDMARKS
                for x, y, kind in [phantom.landmarks[name]]
            ],
        }
    )


def test_chain_flags_rather_than_shifts_when_the_sacrum_is_cut_off(extractor, domain):
    """Images whose lower edge cuts just above the L5-S1 disc (no sacrum in view): L5 at the
    edge looks much like the template's S1, and the sacrum's evidence used to carry the whole
    chain one level up with high confidence (15 of 40 labels confidently wrong with the
    neighbour-side anchor evidence). Now each label is right or flagged, never wrong."""
    template_phantom = make_phantom(template_params(seed=7))
    cases = generate_cases(8, seed=5, missing=("S1",))
    images = [
        label_image(p.pixels, p.pixel_spacing_mm, i)
        for i, p in enumerate([template_phantom, *cases])
    ]
    template_map, *maps = compute_feature_maps(images, extractor, PreparationSettings())
    reference = build_template_reference(template_map, phantom_template(template_phantom), domain)
    outcomes = []
    for i, (phantom, fmap) in enumerate(zip(cases, maps, strict=True)):
        truth = {n: (x, y) for n, (x, y, kind) in phantom.landmarks.items() if kind == "vertebra"}
        assert "S1" not in truth
        results = localize(fmap, reference, domain)
        outcomes += score_image(f"case{i}", results, truth, phantom.pixel_spacing_mm)
    summary = summarize(outcomes)
    assert summary.vertebrae == 40
    assert summary.confidently_wrong == 0, summary
    assert summary.identified >= 0.5, summary


@pytest.mark.slow
def test_chain_on_the_real_set_crossed_with_itself(extractor, domain):
    """Every real image as the template in turn, the other nine as targets (450 vertebrae):
    another person's spine as the template. Measured: 90.9 % identified, 2.9 % confidently
    wrong (VB3_08, whose sacrum is cut off, as the target with VB3_04 and as the template);
    before the anchor evidence was kept to the anchor itself and the sacrum could dispute the
    count, 87.6 % and 7.8 %."""
    if not (REAL_DIR / "truth.json").is_file():
        pytest.skip(f"real data not available at {REAL_DIR.resolve()}")
    truth = json.loads((REAL_DIR / "truth.json").read_text())
    entries = [
        (read_label_image(REAL_DIR / e["file"], e.get("frame")), e["landmarks"])
        for e in truth.values()
    ]
    shipped = load_template_landmarks(REAL_DIR / "template" / "landmarks.json")
    entries.append(
        (
            read_label_image(REAL_DIR / "template" / "template.dcm"),
            {lm.name: {"x": lm.x, "y": lm.y, "kind": lm.kind} for lm in shipped.landmarks},
        )
    )
    maps = compute_feature_maps([image for image, _ in entries], extractor, PreparationSettings())
    outcomes = []
    for t, (_, marks) in enumerate(entries):
        template = parse_template_landmarks(
            {
                "region": "lumbar",
                "landmarks": [
                    {"name": n, "kind": p["kind"], "x": p["x"], "y": p["y"]}
                    for n, p in marks.items()
                ],
            }
        )
        reference = build_template_reference(maps[t], template, domain)
        for i, (image, target) in enumerate(entries):
            if i == t:
                continue
            vertebrae = {n: (p["x"], p["y"]) for n, p in target.items() if p["kind"] == "vertebra"}
            results = localize(maps[i], reference, domain)
            outcomes += score_image(f"{t}->{i}", results, vertebrae, image.pixel_spacing_mm)
    summary = summarize(outcomes)
    assert summary.vertebrae == 450
    assert summary.identified >= 0.90, summary
    assert summary.confidently_wrong <= 0.03, summary
    assert summary.mean_error_mm < 3.0, summary


@pytest.mark.slow
def test_chain_flags_a_count_the_sacrum_disputes_on_real_mri(extractor, domain):
    """VB3_08's sacrum is cut by the lower edge and each of its vertebrae looks like the next
    level down of other people's spines. With VB3_03 as the template the levels' appearance
    outweighs the sacrum and the whole chain shifts by one; the sacrum itself matches better
    where the correct chain puts it, so the two counts disagree and every lumbar label is
    flagged with that reason instead of being confidently wrong."""
    if not (REAL_DIR / "truth.json").is_file():
        pytest.skip(f"real data not available at {REAL_DIR.resolve()}")
    truth = {e["file"]: e for e in json.loads((REAL_DIR / "truth.json").read_text()).values()}
    files = ["VB3_03/slice_04.dcm", "VB3_08/slice_04.dcm"]
    images = [read_label_image(REAL_DIR / f, truth[f].get("frame")) for f in files]
    maps = compute_feature_maps(images, extractor, PreparationSettings())
    target = truth["VB3_08/slice_04.dcm"]["landmarks"]
    vertebrae = {n: (p["x"], p["y"]) for n, p in target.items() if p["kind"] == "vertebra"}
    template_file, template_map = files[0], maps[0]
    marks = truth[template_file]["landmarks"]
    template = parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": n, "kind": p["kind"], "x": p["x"], "y": p["y"]} for n, p in marks.items()
            ],
        }
    )
    reference = build_template_reference(template_map, template, domain)
    results = localize(maps[1], reference, domain)
    summary = summarize(score_image("VB3_08", results, vertebrae, images[1].pixel_spacing_mm))
    assert summary.confidently_wrong == 0, (template_file, summary)
    flagged = [r for r in results if r.kind == "vertebra" and r.status != "ok"]
    assert {r.name for r in flagged} == {"L1", "L2", "L3", "L4", "L5"}, template_file
    assert all(r.reason.startswith("count in doubt: S1") for r in flagged), flagged
    assert all(r.confidence <= 0.5 for r in flagged), flagged
    localizer = Localizer(maps[1], reference, domain, SearchSettings())
    localizer.run()
    assert localizer.diagnostics["count_disputed_by"] == "S1"
    # Without the sacrum's vote the same chain is labelled ok, one level off.
    unchecked = localize(maps[1], reference, domain, SearchSettings(anchor_dissent_margin=math.inf))
    wrong = summarize(score_image("VB3_08", unchecked, vertebrae, images[1].pixel_spacing_mm))
    assert wrong.confidently_wrong == 1.0, (template_file, wrong)


@pytest.mark.slow
def test_a_sacrum_cut_by_the_edge_outvotes_an_l5_that_looks_sacral(extractor, domain):
    """VB3_08's sacrum is cut by the lower edge just below the L5-S1 disc, and its L5 looks more
    like other people's S1 than like their L5. With IVD_42 (another site and sequence) as the
    template, the chain put the context-only S1 on VB3_08's L5 and labelled L1 to L4 as L2 to
    L5, confidently: the cut sacrum's anchor evidence had shrunk with the part beyond the edge.
    Taken per unit of the constellation in view, it brings the correct count close (flagged as
    uncertain here; in the benchmark's run the sacrum disputes the count), and the labels are
    flagged instead."""
    if not (REAL_DIR / "truth.json").is_file() or not (IVD_DIR / "truth.json").is_file():
        pytest.skip(f"real data not available at {REAL_DIR.parent.resolve()}")
    dev = {e["file"]: e for e in json.loads((REAL_DIR / "truth.json").read_text()).values()}
    ivd = {e["file"]: e for e in json.loads((IVD_DIR / "truth.json").read_text()).values()}
    template_entry, target_entry = ivd["IVD_42/slice_04.dcm"], dev["VB3_08/slice_04.dcm"]
    images = [
        read_label_image(IVD_DIR / template_entry["file"], template_entry.get("frame")),
        read_label_image(REAL_DIR / target_entry["file"], target_entry.get("frame")),
    ]
    template_map, target_map = compute_feature_maps(images, extractor, PreparationSettings())
    template = parse_template_landmarks(
        {
            "region": "lumbar",
            "landmarks": [
                {"name": n, "kind": p["kind"], "x": p["x"], "y": p["y"]}
                for n, p in template_entry["landmarks"].items()
            ],
        }
    )
    reference = build_template_reference(template_map, template, domain)
    vertebrae = {
        n: (p["x"], p["y"]) for n, p in target_entry["landmarks"].items() if p["kind"] == "vertebra"
    }
    results = localize(target_map, reference, domain)
    summary = summarize(score_image("VB3_08", results, vertebrae, images[1].pixel_spacing_mm))
    assert summary.confidently_wrong == 0, summary
    assert all(r.status != "ok" for r in results if r.kind == "vertebra"), results
    # The raw evidence of the cut sacrum leaves the shifted chain ok, one level off.
    raw = localize(target_map, reference, domain, SearchSettings(anchor_visible_floor=1.0))
    wrong = summarize(score_image("VB3_08", raw, vertebrae, images[1].pixel_spacing_mm))
    assert wrong.confidently_wrong == 1.0, wrong
