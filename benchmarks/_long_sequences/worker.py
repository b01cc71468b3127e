"""Run one point in this (fresh) process: ``python worker.py '<spec as JSON>'``.

Prints the result as one JSON line after :data:`points.MARKER`; an error exits non-zero
with its traceback on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _long_sequences import points  # noqa: E402

if __name__ == "__main__":
    result = points.run(json.loads(sys.argv[1]))
    print(points.MARKER + json.dumps(result), flush=True)
