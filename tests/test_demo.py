"""``python -m rnnscan demo``: a few training steps on each installed backend, the NumPy forward-only mode."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

import rnnscan.demo as demo  # noqa: E402
from rnnscan.__main__ import main  # noqa: E402

TRAINING = [
    pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None, reason=f"{name} not installed"))
    for name in demo.TRAINING_BACKENDS
]


@pytest.fixture(autouse=True)
def small_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score fewer held-out lines: the test checks the plumbing, not the quality."""
    monkeypatch.setattr(demo, "EVAL_LINES", 300)
    monkeypatch.setattr(demo, "EVAL_BATCH", 256)


@pytest.mark.parametrize("backend", TRAINING)
def test_demo_trains(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", backend, "--steps", "6", "--seed", "1", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    losses = metrics["losses_bits_per_char"]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.05, losses
    assert (tmp_path / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"on {backend}" in printed
    assert f"held-out: {metrics['held_out_bits_per_char']:.3f} bits/char" in printed
    assert "time per step" in printed and str((tmp_path / "training_curve.png").resolve()) in printed
    assert metrics["held_out_bits_per_char"] < 6.6  # below uniform guessing over 96 symbols
    assert len(metrics["samples"]) == len(demo.SAMPLE_INDENTS)


def test_demo_numpy_forward_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "numpy", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "NumPy cannot train" in printed and 'pip install -e ".[jax,demo]"' in printed
    assert f"held-out: {metrics['held_out_bits_per_char']:.3f} bits/char with untrained weights" in printed
    assert 5.5 < metrics["held_out_bits_per_char"] < 8  # untrained: about uniform over 96 symbols
    assert not (tmp_path / "training_curve.png").exists()


def test_demo_without_plotting_packages(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert main(["demo", "--backend", "numpy"]) == 2
    assert 'pip install -e ".[demo]"' in capsys.readouterr().err


def test_demo_bad_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--backend", "numpy", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_command_line_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rnnscan", "demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    text = " ".join(result.stdout.split())
    assert "Train a character-level language model of the Python standard library's own source" in text
    for flag, default in (("--steps", "1000"), ("--seed", "0"), ("--out", "rnnscan-demo/")):
        assert re.search(f"{flag} {flag[2:].upper()} .*?\\(default: {re.escape(default)}\\)", text), flag
    assert "--backend" in text


def test_training_curve_marks_the_held_out_figure_as_the_final_evaluation(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    losses = list(np.linspace(6.0, 3.0, 40) + np.random.default_rng(3).normal(0, 0.1, 40))
    points = demo.plot(plt, losses, 2.9, 5.1, "jax", tmp_path / "curve.png")
    assert points["held-out files, after training: 2.90"] == 1  # one point, at the last step
    assert points["training batch"] == 40
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
