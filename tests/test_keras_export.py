"""Keras 3 with rnnscan enabled, where models are shipped: ``model.export()`` on each backend, served
at two sizes (tests/keras_checks/keras3_export.py), and Keras 3's own recurrent-layer test files on
the TensorFlow backend. Each runs in its own process: Keras fixes its backend at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frameworks import installed

HERE = Path(__file__).resolve().parent
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
FORMATS = {"tensorflow": ["tf_saved_model", "onnx"], "jax": ["tf_saved_model"], "torch": ["onnx", "torch"]}

pytestmark = pytest.mark.skipif(not installed("keras"), reason="keras is not installed")


def _env(backend: str) -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(b, marks=[] if installed(b) else pytest.mark.skip(reason=f"{b} is not installed"))
        for b in KERAS_BACKENDS
    ],
)
def test_keras3_model_export_serves_rnnscans_numbers(backend: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "keras_checks" / "keras3_export.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(backend),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(found) == sorted(FORMATS[backend])
    for fmt, result in found.items():
        assert result["rnnscan"], f"{fmt}: the export did not trace rnnscan's loop"
        assert all(d is not None and d < 1e-5 for d in result["max_difference"]), (fmt, result)


ENABLE = "import rnnscan.keras\n\n\ndef pytest_configure(config):\n    rnnscan.keras.enable()\n"


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
def test_keras3_own_recurrent_layer_tests_pass_on_tensorflow(tmp_path: Path) -> None:
    """keras/src/layers/rnn/*_test.py, as Keras ships them, with rnnscan enabled (a pytest plugin);
    on main, ``test_statefullness_two_states_stack`` failed (two ListWrappers registered twice)."""
    import keras

    (tmp_path / "rnnscan_enabled.py").write_text(ENABLE)
    tests = Path(keras.__file__).parent / "src" / "layers" / "rnn"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "rnnscan_enabled", "-p", "no:cacheprovider", "-q", str(tests)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
        env={**_env("tensorflow"), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0 and " failed" not in summary, proc.stdout[-4000:]
    assert int(summary.split(" passed")[0].split()[-1]) >= 70, summary
