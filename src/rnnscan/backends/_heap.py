"""Freed heap memory handed back to the system, where the C library can: glibc's ``malloc_trim``.

PyTorch allocates CPU tensors with ``malloc``. A remat segment's forward pass records
autograd nodes (small, kept until the backward pass) between its steps' tensors (tens of
KiB, freed a step later), so the freed tensors' pages stay in the process, scattered
between nodes: on the LSTM of ``benchmarks/long_sequences.py`` (T=4,000, torch 2.13, glibc
2.36) the forward pass held 279 MiB where 78 MiB were live. ``malloc_trim(0)`` returns the
free pages inside the heap as well as at its top. It walks the whole heap: 7 ms a call at
T=4,000 there, about 20 ms at T=16,000.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library the process already uses
    except OSError:  # pragma: no cover - a process without a dynamic C library
        return None
    return getattr(libc, "malloc_trim", None)  # glibc's; musl has none


def give_back() -> None:
    """Return the heap's free pages to the system (a no-op where the C library cannot)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
