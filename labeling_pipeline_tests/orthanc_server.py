"""A real Orthanc with the DICOMweb plugin for tests: started on 127.0.0.1 with a free port and a
temporary storage folder, filled through Orthanc's REST API, stopped afterwards.

Orthanc comes from Debian (``apt-get install orthanc orthanc-dicomweb``; ``.ci/run`` installs
it). Orthanc 1.10 has no bind-address option: ``RemoteAccessAllowed: false`` makes it refuse
every client but this machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import requests

PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so",
)
SAMPLE_DATA = Path(__file__).resolve().parents[1] / "data"


def find_orthanc() -> tuple[str, str] | None:
    """(Orthanc executable, DICOMweb plugin) when both are installed."""
    executable = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None
    )
    # Debian puts the plugin in /usr/share/orthanc/plugins (a link to /usr/lib/orthanc/...so.N).
    candidates = [
        *map(Path, PLUGIN_CANDIDATES),
        *sorted(Path("/usr/lib/orthanc").glob("*DicomWeb.so*")),
    ]
    plugin = next((str(p) for p in candidates if p.is_file()), None)
    return (executable, plugin) if executable and plugin else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancServer:
    """One Orthanc process; :meth:`stop` and :meth:`start` again keep its port and storage
    (a server going away and coming back)."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None) -> None:
        found = find_orthanc()
        if found is None:
            raise RuntimeError("Orthanc or its DICOMweb plugin is not installed")
        self.executable, self.plugin = found
        self.workdir = Path(workdir)
        self.port = free_port()
        self.users = users or {}
        self.process: subprocess.Popen | None = None
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "labeling-pipeline-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "HttpDescribeErrors": True,
            "StorageCompression": False,
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.config_path = self.workdir / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        return next(iter(self.users.items())) if self.users else None

    def start(self, timeout_s: float = 30.0) -> OrthancServer:
        log = open(self.workdir / "orthanc.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [self.executable, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s: {self.log_tail()}")

    def stop(self, kill: bool = False) -> None:
        """Stop Orthanc: SIGTERM and wait (about 2 s), or at once with ``kill`` (a crash; the
        SQLite index recovers on the next start)."""
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self) -> str:
        path = self.workdir / "orthanc.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    # REST API -----------------------------------------------------------------------------
    def upload(self, files: Iterable[Path]) -> dict[Path, int]:
        """POST each file to /instances; the HTTP status per file (Orthanc refuses broken
        files with 400)."""
        statuses = {}
        for path in files:
            response = requests.post(
                f"{self.url}/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30
            )
            statuses[Path(path)] = response.status_code
        return statuses

    def upload_bytes(self, payload: bytes) -> None:
        response = requests.post(f"{self.url}/instances", data=payload, auth=self.auth, timeout=30)
        response.raise_for_status()

    def upload_sample_data(self, data_dir: Path = SAMPLE_DATA) -> dict[Path, int]:
        files = sorted(
            p
            for source in ("incoming", "archive")
            for p in (data_dir / source).rglob("*")
            if p.is_file()
        )
        return self.upload(files)

    def delete_study(self, study_uid: str) -> None:
        found = requests.post(
            f"{self.url}/tools/lookup", data=study_uid, auth=self.auth, timeout=10
        ).json()
        ids = [item["ID"] for item in found if item["Type"] == "Study"]
        assert ids, f"study {study_uid} is not on the server"
        for orthanc_id in ids:
            requests.delete(
                f"{self.url}/studies/{orthanc_id}", auth=self.auth, timeout=10
            ).raise_for_status()
