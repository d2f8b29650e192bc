"""Who is using an output directory: process identities, the output directory's holders, and
exclusive file locks for what one writer at a time may change.

- :class:`ProcessIdentity`: pid, host and the process's start (so that a reused pid is not
  taken for the process that died); :meth:`ProcessIdentity.is_alive` answers for this host.
- :class:`OutputDirectoryLock`: several processes may work on one output directory as long as
  they label the same data with the same template (batched and parallel runs); a process with
  another data directory or template is refused at once, with the holder named. A holder whose
  process died is removed (its lock taken over).
- :func:`exclusive_lock`: an ``flock`` on a file under ``<output>/.locks/`` (one study
  partition, the shared catalog and template); the kernel releases it when its process dies, so
  it can never go stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCKS_DIR = ".locks"
_HOLDER_PREFIX = "holder-"


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits to be reaped by its parent (Linux ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


def _process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessIdentity:
    """One process: ``pid`` on ``host``, started at ``start_ticks`` (None when unknown);
    ``started_at`` is when it began using the output directory (ISO 8601, UTC)."""

    pid: int
    host: str
    start_ticks: int | None
    started_at: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            start_ticks=_process_start_ticks(os.getpid()),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def is_alive(self) -> bool:
        """False only when this process is known to be gone: same host, and the pid is free
        or belongs to a process that started at another time. A process on another host is
        taken to be alive (it cannot be asked)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else
        if _is_zombie(self.pid):  # exited; its parent has not collected it yet
            return False
        if self.start_ticks is None:
            return True
        now = _process_start_ticks(self.pid)
        return now is None or now == self.start_ticks

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


# ---- exclusive locks --------------------------------------------------------------------------

_held_lock = threading.Lock()
_held: dict[str, tuple[int, int]] = {}  # lock path -> (file descriptor, nesting count)


@contextlib.contextmanager
def exclusive_lock(
    path: Path, on_wait: Callable[[], None] | None = None, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) for the block.

    Waits while another process holds it (``on_wait`` is called once when waiting starts).
    Nested use in one process is allowed (the lock is held until the outermost block ends).
    """
    key = str(Path(path).resolve())
    with _held_lock:
        if key in _held:
            fd, count = _held[key]
            _held[key] = (fd, count + 1)
            acquired_here = False
        else:
            acquired_here = True
    if acquired_here:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(poll_s)
        with _held_lock:
            _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _held_lock:
            fd, count = _held[key]
            if count > 1:
                _held[key] = (fd, count - 1)
            else:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def partition_lock_path(output_dir: Path, partition_key: str) -> Path:
    """The lock of one study partition's outputs (features, labels, overlays)."""
    return Path(output_dir) / LOCKS_DIR / f"partition-{partition_key}.lock"


def shared_lock_path(output_dir: Path) -> Path:
    """The lock of the files every study shares (catalog, template reference)."""
    return Path(output_dir) / LOCKS_DIR / "shared.lock"


# ---- the output directory's holders ------------------------------------------------------------


class OutputDirectoryBusy(RuntimeError):
    """Another live process uses the output directory for other inputs."""


@dataclass(frozen=True)
class Holder:
    """A process using an output directory for the inputs summarised by ``inputs_digest``."""

    process: ProcessIdentity
    inputs_digest: str

    def to_json(self) -> str:
        return json.dumps({"process": asdict(self.process), "inputs_digest": self.inputs_digest})

    @classmethod
    def from_json(cls, text: str) -> Holder:
        document = json.loads(text)
        return cls(ProcessIdentity(**document["process"]), str(document["inputs_digest"]))


_registered_lock = threading.Lock()
_registered: dict[str, int] = {}  # holder file -> nesting count in this process


class OutputDirectoryLock:
    """Registers this process as a user of ``output_dir`` for ``inputs_digest`` (a digest of
    the data directory and template it works from).

    Holders are files ``<output>/.locks/holder-<host>-<pid>.json``; registering takes the
    directory's guard lock, removes holders whose process is gone (their lock is taken over)
    and refuses (:class:`OutputDirectoryBusy`) when a live holder works from other inputs.
    Nested registration by one process is counted; the file goes with the last release.
    """

    def __init__(self, output_dir: Path, inputs_digest: str) -> None:
        self.directory = Path(output_dir) / LOCKS_DIR
        self.inputs_digest = inputs_digest
        self.identity = ProcessIdentity.current()
        name = f"{_HOLDER_PREFIX}{self.identity.host}-{self.identity.pid}.json"
        self.holder_file = self.directory / name
        self.taken_over: list[Holder] = []

    def holders(self) -> list[tuple[Path, Holder]]:
        """Every registered holder, including dead ones (unreadable files are skipped)."""
        found = []
        if self.directory.is_dir():
            for path in sorted(self.directory.glob(f"{_HOLDER_PREFIX}*.json")):
                try:
                    found.append((path, Holder.from_json(path.read_text())))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return found

    def acquire(self) -> None:
        key = str(self.holder_file)
        with exclusive_lock(self.directory / "guard.lock"):
            with _registered_lock:
                if _registered.get(key):
                    _registered[key] += 1
                    return
            for path, holder in self.holders():
                if path == self.holder_file:
                    continue
                if not holder.process.is_alive():
                    path.unlink(missing_ok=True)
                    self.taken_over.append(holder)
                elif holder.inputs_digest != self.inputs_digest:
                    raise OutputDirectoryBusy(
                        f"output directory in use by {holder.process.describe()} with another "
                        "data directory or template; wait for it to finish or choose another "
                        "output directory"
                    )
            me = Holder(self.identity, self.inputs_digest)
            temporary = self.holder_file.with_suffix(".tmp")
            temporary.write_text(me.to_json())
            os.replace(temporary, self.holder_file)
            with _registered_lock:
                _registered[key] = 1

    def release(self) -> None:
        key = str(self.holder_file)
        with _registered_lock:
            count = _registered.get(key, 0)
            if count > 1:
                _registered[key] = count - 1
                return
            _registered.pop(key, None)
        if count:
            self.holder_file.unlink(missing_ok=True)

    def others_alive(self) -> list[Holder]:
        """Live holders other than this process."""
        return [
            holder
            for path, holder in self.holders()
            if path != self.holder_file and holder.process.is_alive()
        ]

    def __enter__(self) -> OutputDirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
