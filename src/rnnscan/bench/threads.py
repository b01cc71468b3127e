"""``--threads N``: the same thread count for every framework, here and in the Keras 3 workers.

By default every framework keeps its own default (usually one thread per core).
On a shared or busy machine, multi-threaded eager ops (PyTorch's OpenMP above
all) can stall for a scheduler time slice at every op; ``--threads 1`` gives
steadier figures. Must run before JAX or TensorFlow is imported.
"""

from __future__ import annotations

import os
import sys

from .._frameworks import installed


def limit_threads(count: int | None, torch: bool = True) -> dict[str, str]:
    """Cap NumPy's BLAS, JAX/XLA, TensorFlow and (if ``torch``) PyTorch at ``count`` threads.

    Returns the environment variables set (inherited by subprocesses).
    """
    if count is None:
        return {}
    env = thread_env(count)
    os.environ.update(env)  # read by the frameworks at import, here and in subprocesses
    if "jax" in sys.modules or "tensorflow" in sys.modules:
        print("rnnscan bench: --threads is set after JAX/TensorFlow were imported; it may not apply", file=sys.stderr)
    if installed("threadpoolctl"):
        import threadpoolctl

        threadpoolctl.threadpool_limits(count)
    if torch and installed("torch"):
        import torch as pytorch

        pytorch.set_num_threads(count)
        try:
            pytorch.set_num_interop_threads(count)
        except RuntimeError:  # inter-op work already started: it can no longer change
            pass
    return env


def thread_env(count: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that cap every framework at ``count`` threads (``XLA_FLAGS`` added to
    ``base``'s, by default this process's)."""
    n = str(count)
    env = {name: n for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env.update(TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n)
    xla = f"--xla_cpu_multi_thread_eigen={'false' if count == 1 else 'true'} intra_op_parallelism_threads={n}"
    env["XLA_FLAGS"] = " ".join(f for f in ((os.environ if base is None else base).get("XLA_FLAGS", ""), xla) if f)
    return env
