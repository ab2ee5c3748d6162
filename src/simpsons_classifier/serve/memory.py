"""Giving freed memory back to the system after each batch and each decode.

glibc's malloc serves blocks below its mmap threshold from heaps it seldom shrinks, and raises that threshold (up to
32 MiB) whenever a larger block is freed. A model's activations (a few MiB each, in as many shapes as there are batch
sizes) and Pillow's image blocks then settle in the heap and stay: under load the PyTorch backend grew by 0.5 GB and
kept it. ``malloc_trim`` hands the free pages back; measured on EfficientNet-Lite0 batches of 1-32 images at 224 px,
it costs under 2 % of a batch's CPU time, against the 5-10 % of a fixed, lower mmap threshold. Other C libraries have
no such call, and nothing is done there.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc); a no-op elsewhere."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
