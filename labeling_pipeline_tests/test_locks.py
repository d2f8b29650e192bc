"""Holders of an output directory: same inputs share it, other inputs are refused naming the
holder, a dead holder's lock is taken over; and the sweep of interrupted writes."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labeling_pipeline.atomic import sweep_interrupted_writes
from labeling_pipeline.imaging.dicom import scan_data_dir, scan_is_complete
from labeling_pipeline.locks import (
    Holder,
    OutputDirectoryBusy,
    OutputDirectoryLock,
    ProcessIdentity,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _register(output: Path, identity: ProcessIdentity, digest: str) -> Path:
    path = output / ".locks" / f"holder-{identity.host}-{identity.pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(Holder(identity, digest).to_json())
    return path


def test_other_inputs_are_refused_naming_a_live_holder(tmp_path: Path) -> None:
    me = ProcessIdentity.current()
    parent = ProcessIdentity(os.getppid(), me.host, None, "2026-01-02T03:04:05+00:00")
    _register(tmp_path, parent, "digest-a")
    with OutputDirectoryLock(tmp_path, "digest-a"):  # same inputs: shared
        pass
    with pytest.raises(OutputDirectoryBusy, match=f"pid {os.getppid()} on .*2026-01-02"):
        OutputDirectoryLock(tmp_path, "digest-b").acquire()


def test_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    me = ProcessIdentity.current()
    stale = _register(tmp_path, ProcessIdentity(_dead_pid(), me.host, None, "x"), "digest-a")
    lock = OutputDirectoryLock(tmp_path, "digest-b")
    with lock:
        assert not stale.exists() and lock.holder_file.exists()
        assert [h.process.pid for h in lock.taken_over] == [int(stale.stem.rsplit("-", 1)[1])]
    assert not lock.holder_file.exists()


def test_sweep_removes_only_dead_writers_files_and_never_corrections(tmp_path: Path) -> None:
    dead = _dead_pid()
    leftovers = [
        tmp_path / "overlays" / f".1.2.3.png.{dead}.tmp",
        tmp_path / "features.zarr" / "p" / f"_tmp-{dead}-{'a' * 32}",
    ]
    live = tmp_path / "overlays" / f".1.2.4.png.{os.getpid()}.tmp"
    kept = tmp_path / "corrections" / f".c.json.{dead}.tmp"
    for path in [*leftovers, live, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if path.name.startswith("_tmp") else path.write_text("x")
    removed = sweep_interrupted_writes(tmp_path, lambda pid: pid != dead)
    assert sorted(removed) == sorted(leftovers)
    assert live.exists() and kept.exists()


def test_a_folder_that_cannot_be_listed_makes_the_scan_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "incoming" / "locked").mkdir(parents=True)
    real_scandir = os.scandir

    def scandir(path):  # root ignores permissions, so the refusal is simulated
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    catalog = scan_data_dir(tmp_path).catalog_frame()
    assert catalog["reason_code"].tolist() == ["unreadable_folder"]
    assert not scan_is_complete(catalog)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_an_exited_process_not_yet_reaped_is_not_alive() -> None:
    # A run's process that has exited stays a zombie until its parent (the code server) waits
    # for it: it holds nothing any more, and nobody should wait for it.
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    host = ProcessIdentity.current().host
    try:
        for _ in range(200):  # until it has exited (unreaped: nothing waited for it yet)
            if Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child did not exit")
        assert not ProcessIdentity(process.pid, host, None, "x").is_alive()
        assert ProcessIdentity.current().is_alive()
    finally:
        process.wait()
