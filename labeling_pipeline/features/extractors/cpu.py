"""Where inference runs, and the CPU settings it runs with (threads, glibc malloc)."""

from __future__ import annotations

import contextlib
import os

import torch

_THREADS_CONFIGURED = False


def default_device() -> torch.device:
    """``cuda`` when a GPU is usable, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_cpu_threads() -> None:
    """CPU settings for inference, once per process.

    Threads: the CPUs this process may run on (affinity aware), unless the user set them:
    torch's default counts the machine's cores, which over-subscribes containers pinned to a
    few; OMP_NUM_THREADS (or LABELING_TORCH_THREADS) wins.

    Memory (glibc only; LABELING_MALLOC_TUNING=0 turns it off): by default glibc serves large
    blocks with fresh mmaps and trims freed heap eagerly, so every batch's activations and
    feature maps page-fault anew (measured: the CNN forward took 1.7x longer). Serving blocks
    up to 32 MB from the heap and keeping up to 1 GB of freed heap avoids that; the price is
    that the process holds on to that much freed memory.
    """
    global _THREADS_CONFIGURED
    if _THREADS_CONFIGURED:
        return
    _THREADS_CONFIGURED = True
    requested = os.environ.get("LABELING_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if requested:
        with contextlib.suppress(ValueError):
            torch.set_num_threads(max(1, int(requested)))
    else:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            available = os.cpu_count() or 1
        torch.set_num_threads(max(1, available))
    if os.environ.get("LABELING_MALLOC_TUNING", "1") != "0":
        _tune_glibc_malloc()


def _tune_glibc_malloc() -> None:
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit
        libc.mallopt(m_trim_threshold, 1024 * 1024 * 1024)
    except (OSError, AttributeError):
        return
