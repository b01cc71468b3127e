"""rnnscan.rnn on long sequences: ``remat``'s memory and time, ``unroll=k``'s time, on JAX, PyTorch and TensorFlow.

One fresh subprocess per measured point (``benchmarks/_long_sequences/``). The figures of the
README and docs/long-sequences.md come from, on an idle machine::

    python benchmarks/long_sequences.py --out docs/bench

``--quick`` is a smoke run (a few minutes); ``--help`` says the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _long_sequences.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
