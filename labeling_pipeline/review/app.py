"""The review web app (Starlette): static pages and a small JSON API.

Pages: ``/`` (queue and image view), ``/template`` (make a template). API, all JSON except
pixels:

- ``GET /api/queue?study=&landmark=&status=``: images to review, most uncertain first.
- ``GET /api/images/{sop}``: one image's landmarks (curated) and the next image.
- ``GET /api/sources/{source}/pixels``: float32 little-endian pixels, rows x columns (headers
  ``X-Rows``, ``X-Columns``, ``X-Window-Center``, ``X-Window-Width``); ``source`` is a
  SOPInstanceUID of a labelled image or ``upload-<sha256>`` of an uploaded DICOM file.
- ``POST /api/images/{sop}/actions``: ``{"reviewer", "actions": [{"landmark", "action", "x",
  "y"}]}`` recorded as corrections.
- ``GET /api/template``, ``POST /api/template/upload`` (DICOM bytes), ``POST /api/template``
  (``{"source", "region", "landmarks": [{"name", "x", "y"}]}``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from labeling_pipeline.anatomy import DomainError, load_domain
from labeling_pipeline.corrections import CorrectionError
from labeling_pipeline.imaging.dicom import DicomValidationError, read_label_image
from labeling_pipeline.imaging.image import LabelImage
from labeling_pipeline.localization.template import TemplateError, load_template_landmarks
from labeling_pipeline.review.template_maker import (
    build_landmarks,
    known_regions,
    save_template,
)
from labeling_pipeline.review.workspace import (
    QueueFilter,
    ReviewWorkspace,
    UnknownImageError,
    default_window,
)

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
UPLOAD_PREFIX = "upload-"
_UPLOAD = re.compile(r"^upload-[0-9a-f]{64}$")

#: Called after a template was saved, with the data directory; returns what it did, in words
#: (the command line passes one that rebuilds the template reference).
TemplateSaved = Callable[[Path], str]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    data_dir: Path, output_dir: Path, on_template_saved: TemplateSaved | None = None
) -> Starlette:
    """The app over ``data_dir`` (DICOM inputs, ``template/``, ``domain/``) and ``output_dir``
    (labels, catalog, corrections)."""
    workspace = ReviewWorkspace(data_dir, output_dir)
    uploads_dir = Path(output_dir) / "review_uploads"

    def _filter(request: Request) -> QueueFilter:
        params = request.query_params
        return QueueFilter(
            study=params.get("study", ""),
            landmark=params.get("landmark", ""),
            status=params.get("status", "needs_review"),
        )

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    async def template_page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "template.html")

    async def queue(request: Request) -> Response:
        return JSONResponse(
            {"images": workspace.queue(_filter(request)), "filters": workspace.filter_choices()}
        )

    async def image(request: Request) -> Response:
        try:
            detail = workspace.image_detail(request.path_params["sop"], _filter(request))
        except UnknownImageError as error:
            return _error(404, str(error))
        return JSONResponse(detail)

    def _source_image(source: str) -> LabelImage:
        if source.startswith(UPLOAD_PREFIX):
            if not _UPLOAD.match(source):
                raise UnknownImageError(f"no upload {source!r}")
            path = uploads_dir / f"{source[len(UPLOAD_PREFIX) :]}.dcm"
            if not path.is_file():
                raise UnknownImageError(f"no upload {source!r}")
            return read_label_image(path)
        return workspace.image(source)

    async def pixels(request: Request) -> Response:
        try:
            picture = _source_image(request.path_params["source"])
        except UnknownImageError as error:
            return _error(404, str(error))
        except (DicomValidationError, OSError) as error:
            return _error(422, f"the image cannot be read: {error}")
        values = np.ascontiguousarray(picture.pixels, dtype="<f4")
        center, width = default_window(values)
        if picture.window_center is not None and picture.window_width:
            center, width = float(picture.window_center), float(picture.window_width)
        return Response(
            values.tobytes(),
            media_type="application/octet-stream",
            headers={
                "X-Rows": str(picture.rows),
                "X-Columns": str(picture.columns),
                "X-Window-Center": f"{center:.6g}",
                "X-Window-Width": f"{width:.6g}",
                "X-Monochrome1": "1"
                if picture.photometric_interpretation == "MONOCHROME1"
                else "0",
                "Cache-Control": "no-store",
            },
        )

    async def actions(request: Request) -> Response:
        sop = request.path_params["sop"]
        try:
            body: dict[str, Any] = await request.json()
            records = workspace.record(sop, body.get("reviewer", ""), body.get("actions") or [])
            detail = workspace.image_detail(sop, _filter(request))
        except UnknownImageError as error:
            return _error(404, str(error))
        except (CorrectionError, ValueError, TypeError, AttributeError) as error:
            return _error(400, str(error))
        return JSONResponse(
            {"recorded": len(records), "image": detail, "template_bank": _refresh_bank()}
        )

    def _refresh_bank() -> dict[str, Any]:
        # The decisions are stored whatever happens here; the bank follows them best-effort
        # (the template_bank asset refreshes it too).
        try:
            refreshed = workspace.refresh_bank()
        except (TemplateError, DomainError, OSError, ValueError) as error:
            return {"error": f"template bank not refreshed: {error}"}
        return {"entries": len(refreshed.entries), "problems": refreshed.problems}

    async def template_info(request: Request) -> Response:
        paths = Path(data_dir) / "template"
        current = None
        try:
            landmarks = load_template_landmarks(paths / "landmarks.json")
            current = {
                "region": landmarks.region,
                "landmarks": [
                    {"name": lm.name, "kind": lm.kind, "x": lm.x, "y": lm.y}
                    for lm in landmarks.landmarks
                ],
            }
        except TemplateError:
            current = None
        return JSONResponse(
            {
                "current": current,
                "regions": known_regions(Path(data_dir) / "domain"),
                "images": workspace.labelled_images(),
            }
        )

    async def template_upload(request: Request) -> Response:
        data = await request.body()
        if not data:
            return _error(400, "no file received")
        if len(data) > MAX_UPLOAD_BYTES:
            return _error(413, "file too large")
        digest = hashlib.sha256(data).hexdigest()
        path = uploads_dir / f"{digest}.dcm"
        uploads_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(data)
        try:
            picture = read_label_image(path)
        except (DicomValidationError, ValueError) as error:
            path.unlink(missing_ok=True)
            return _error(422, f"not a usable DICOM image: {error}")
        return JSONResponse(
            {
                "source": f"{UPLOAD_PREFIX}{digest}",
                "rows": picture.rows,
                "columns": picture.columns,
            }
        )

    async def template_save(request: Request) -> Response:
        try:
            body: dict[str, Any] = await request.json()
            source = str(body.get("source", ""))
            region = str(body.get("region", ""))
            domain = load_domain(region, Path(data_dir) / "domain")
            landmarks = build_landmarks(region, body.get("landmarks") or [], domain)
            if source.startswith(UPLOAD_PREFIX):
                if not _UPLOAD.match(source):
                    raise UnknownImageError(f"no upload {source!r}")
                path, frame = uploads_dir / f"{source[len(UPLOAD_PREFIX) :]}.dcm", None
                frame = read_label_image(path).frame_index
            else:
                path, frame = workspace.source_file(source)
            written = save_template(
                Path(data_dir) / "template",
                path,
                max(frame, 0),
                landmarks,
                Path(output_dir) / "template_history",
            )
        except UnknownImageError as error:
            return _error(404, str(error))
        except (TemplateError, ValueError, TypeError, KeyError, OSError) as error:
            return _error(400, str(error))
        rebuilt = on_template_saved(Path(data_dir)) if on_template_saved else ""
        return JSONResponse(
            {
                "saved": {name: str(p) for name, p in written.items()},
                "landmarks": len(landmarks.landmarks),
                "rebuild": rebuilt or "not rebuilt: run `labeling-pipeline run` to use it",
            }
        )

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, exc.detail)

    routes = [
        Route("/", page),
        Route("/template", template_page),
        Route("/api/queue", queue),
        Route("/api/images/{sop}", image),
        Route("/api/images/{sop}/actions", actions, methods=["POST"]),
        Route("/api/sources/{source}/pixels", pixels),
        Route("/api/template", template_info),
        Route("/api/template/upload", template_upload, methods=["POST"]),
        Route("/api/template", template_save, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.workspace = workspace
    return app
