"""The review web app: a queue of flagged images, an image view where people correct landmarks,
and a page where a template is made. Served on 127.0.0.1 by ``labeling-pipeline review``.

- :mod:`.workspace`: what the app reads and records (labels, catalog, corrections), no web code.
- :mod:`.template_maker`: the landmark order to click and writing a valid ``template/``.
- :mod:`.app`: the Starlette application (JSON API and the static pages in ``static/``).
- :mod:`.server`: running it with uvicorn, in the foreground or in a thread (tests).
"""

from labeling_pipeline.review.app import create_app
from labeling_pipeline.review.server import ReviewServer, serve
from labeling_pipeline.review.workspace import ReviewWorkspace

__all__ = ["ReviewServer", "ReviewWorkspace", "create_app", "serve"]
