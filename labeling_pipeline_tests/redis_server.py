"""A real Redis for tests (the Celery broker and result backend): ``redis-server`` on 127.0.0.1
with a free port, no persistence, its working directory in a temporary folder; stopped after.

Redis comes from Debian (``apt-get install redis-server``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from labeling_pipeline_tests.orthanc_server import free_port


def find_redis() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        executable = find_redis()
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        self.executable = executable
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        command = [
            self.executable, "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        log = (self.workdir / "redis.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "redis-server did not start: "
                        + (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
