"""Sample studies as the server should hold them, and extra instances to upload."""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, generate_uid

from labeling_pipeline.imaging.dicomweb import DicomwebSettings, StudyCache
from labeling_pipeline_tests.orthanc_server import SAMPLE_DATA, OrthancServer


def sample_instances(uploaded: dict[Path, int] | None = None) -> dict[str, dict[str, str]]:
    """StudyInstanceUID -> {SOPInstanceUID: StudyDate} of the sample files (those Orthanc took
    when ``uploaded`` is given)."""
    studies: dict[str, dict[str, str]] = defaultdict(dict)
    for source in ("incoming", "archive"):
        for path in sorted((SAMPLE_DATA / source).rglob("*")):
            if not path.is_file() or (uploaded is not None and uploaded.get(path) != 200):
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            studies[ds.StudyInstanceUID][ds.SOPInstanceUID] = ds.StudyDate
    return dict(studies)


def settings_for(server: OrthancServer, **env: str) -> DicomwebSettings:
    settings = DicomwebSettings.from_env({"LABELING_DICOMWEB_URL": server.dicomweb_url, **env})
    assert settings is not None
    return settings


def cached_sops(cache: StudyCache) -> dict[str, set[str]]:
    """StudyInstanceUID -> SOPInstanceUIDs of the files in the cache (read from the files)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in cache.root.rglob("*.dcm"):
        if any(part.startswith(".") for part in path.relative_to(cache.root).parts):
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[ds.StudyInstanceUID].add(ds.SOPInstanceUID)
    return dict(found)


def to_bytes(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def sibling_series(source: Path, description: str) -> Dataset:
    """A copy of a sample image as a new series of the same study (e.g. an axial one)."""
    ds = pydicom.dcmread(source)
    ds = copy.deepcopy(ds)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription = description
    return ds


def label_sr(source: Dataset, points: dict[str, tuple[float, float]]) -> Dataset:
    """A small Comprehensive SR: one SCOORD POINT (column, row) per landmark on ``source``, in
    the source's study and, for the non-image test, any series the caller sets."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComprehensiveSRStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComprehensiveSRStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in (
        "PatientName",
        "PatientID",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
    ):
        if keyword in source:
            setattr(ds, keyword, source.data_element(keyword).value)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 900
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = [_code("126000", "DCM", "Imaging Measurement Report")]
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    items = []
    for name, (x, y) in sorted(points.items()):
        image = Dataset()
        image.RelationshipType = "SELECTED FROM"
        image.ValueType = "IMAGE"
        image.ReferencedSOPSequence = [reference]
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "SCOORD"
        item.ConceptNameCodeSequence = [_code(name, "99LBLPIPE", name)]
        item.GraphicType = "POINT"
        item.GraphicData = [float(x), float(y)]
        item.ContentSequence = [image]
        items.append(item)
    ds.ContentSequence = items
    return ds


def sr_points(ds: Dataset) -> dict[str, tuple[float, float]]:
    return {
        item.ConceptNameCodeSequence[0].CodeValue: tuple(float(v) for v in item.GraphicData)
        for item in ds.ContentSequence
    }


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, scheme, meaning
    return code


def same_pixels(a: Path, b: Path) -> bool:
    return bool(np.array_equal(pydicom.dcmread(a).pixel_array, pydicom.dcmread(b).pixel_array))
