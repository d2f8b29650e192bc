"""Running the review app with uvicorn: in the foreground (the command line) or in a thread
(tests, embedding). Binds to 127.0.0.1 unless told otherwise: the app has no login."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from labeling_pipeline.review.app import TemplateSaved, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serve(
    data_dir: Path,
    output_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    on_template_saved: TemplateSaved | None = None,
) -> None:
    """Serve the app until interrupted (Ctrl-C)."""
    app = create_app(data_dir, output_dir, on_template_saved)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class ReviewServer:
    """The app served from a background thread: ``with ReviewServer(...) as server:`` starts it
    on a free port and stops it on leaving; ``server.url`` is its address."""

    def __init__(
        self,
        data_dir: Path,
        output_dir: Path,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        on_template_saved: TemplateSaved | None = None,
    ) -> None:
        self.host, self.port = host, port or free_port(host)
        app = create_app(data_dir, output_dir, on_template_saved)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> ReviewServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the review server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
