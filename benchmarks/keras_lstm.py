"""Keras 3 ``LSTM(64)`` train step on (32, 100, 16): Keras's own loop against rnnscan's, on jax, torch, tensorflow.

With and without a ``Masking`` layer, plus torch with ``jit_compile=True``; a table and a JSON file
(``rnnscan.bench.keras_lstm``). For figures, run on an idle machine, e.g.::

    python benchmarks/keras_lstm.py --repeats 20 --json keras_lstm.json
"""

from __future__ import annotations

import sys

from rnnscan.bench.keras_lstm import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
