"""The masked tanh SimpleRNN workload of the backend issues, every backend against its peers.

B=32, T=200, D=16, U=64, float32, forward and forward+backward: a front end to
``python -m rnnscan bench`` (workload W1) at that one size, the full set of peers
included (``torch.compile`` and XLA too). Extra flags pass through, e.g.::

    python benchmarks/simple_rnn.py --backends torch --repeats 30 --threads 1 --out results/
"""

from __future__ import annotations

import sys

from rnnscan.bench import main

if __name__ == "__main__":
    sys.exit(main(["--workloads", "W1", "--T", "200", "--B", "32", "--U", "64", *sys.argv[1:]]))
