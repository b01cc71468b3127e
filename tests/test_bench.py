"""``python -m rnnscan bench``: tiny runs of the real command, one per backend, and the report made from them.

No timing assertions: the figures are checked against each other and against the
printed tables (made again from bench.json), never against a speed.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnscan.__main__ import main as cli
from rnnscan.bench import QUICK_TIME, Settings, main
from rnnscan.bench.harness import Row, run_all
from rnnscan.bench.peers import BACKEND_MODES, BACKENDS, KERAS3, Impl, implementations
from rnnscan.bench.plots import plot_ratios, plot_times
from rnnscan.bench.report import cell, derive, duration, notes, print_report, rows_of, us
from rnnscan.bench.timing import UNSTEADY, measure

from frameworks import installed

WORKLOADS = ("W1", "W3")  # W1 has torch.nn's fused peer, W3 the nested state
TINY = ["--quick", "--T", "4", "--B", "2", "--U", "8", "--repeats", "2", "--workloads", ",".join(WORKLOADS)]
# Keras 3's jax and numpy rnn do not take a dict state: the test notices the day Keras fixes it.
KERAS_FAILURES = {("jax", "W3"), ("numpy", "W3")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run of ``python -m rnnscan bench`` per installed backend, at once: its JSON, stdout and stderr."""
    root = tmp_path_factory.mktemp("bench")
    started = {}
    for backend in (b for b in BACKENDS if installed(b)):
        command = [sys.executable, "-m", "rnnscan", "bench", *TINY, "--backends", backend, "--out", str(root / backend)]
        started[backend] = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = {}
    for backend, process in started.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        doc = json.loads((root / backend / "bench.json").read_text())
        found[backend] = {"doc": doc, "stdout": out, "stderr": err, "out": root / backend}
    return found


def _rows(runs: dict[str, dict[str, Any]]) -> list[Row]:
    return [row for run in runs.values() for row in rows_of(run["doc"])]


def test_every_peer_ran_once(runs: dict[str, dict[str, Any]]) -> None:
    rows = {(r.backend, r.impl, r.workload, r.mode): r for r in _rows(runs)}
    expected = [
        (impl, workload, mode)
        for impl in implementations()
        if impl.quick and installed(impl.backend)
        for workload in WORKLOADS
        if impl.workloads is None or workload in impl.workloads
        for mode in BACKEND_MODES[impl.backend]
    ]
    assert len(_rows(runs)) == len(rows) == len(expected)
    for impl, workload, mode in expected:
        row = rows[impl.backend, impl.name, workload, mode]
        assert (row.T, row.B, row.U) == (4, 2, 8)
        if impl.missing() is not None:
            assert row.status == "missing" and "pip install 'rnnscan[" in row.error
        elif impl.name == KERAS3 and (impl.backend, workload) in KERAS_FAILURES:
            assert row.status == "error" and row.error == "KeyError: 0", row
        else:
            assert row.status == "ok", row.traceback or row.error


def test_counts_agree_and_only_the_backend_asked_for_runs(runs: dict[str, dict[str, Any]]) -> None:
    for backend, run in runs.items():
        timed = [r for r in rows_of(run["doc"]) if r.status != "missing"]
        assert {r.backend for r in rows_of(run["doc"])} == {backend}
        assert f"rnnscan bench: {len(timed)} figures to time on {backend}\n" in run["stderr"]
        assert run["stdout"].splitlines()[-1].startswith(f"{len(timed)} figures timed in ")
        assert run["doc"]["not_run"] == {}


def test_figures_ratios_and_numbers(runs: dict[str, dict[str, Any]]) -> None:
    rows = _rows(runs)
    ok = [r for r in rows if r.status == "ok"]
    for row in ok:
        figures = (row.min_s, row.q1_s, row.median_s, row.q3_s, row.max_s)
        assert all(f is not None and math.isfinite(f) and f > 0 for f in figures) and row.warmup_s
        assert figures == tuple(sorted(figures)), row  # type: ignore[type-var]
        assert row.per_step_s == pytest.approx(row.median_s / row.T)  # type: ignore[operator]
        assert row.samples >= 2 and row.calls_per_sample >= 1
        assert row.agrees, row  # every implementation computes rnnscan's numbers (outputs or gradients)
        peers = [r for r in ok if r.problem == row.problem and not r.rnnscan]
        fastest = min(peers, key=lambda r: r.median_s)  # type: ignore[arg-type, return-value]
        assert (row.fastest_peer, row.ratio) == (fastest.impl, pytest.approx(row.median_s / fastest.median_s))  # type: ignore[operator]


def test_the_report_is_made_from_what_was_timed(runs: dict[str, dict[str, Any]]) -> None:
    """The tables printed by the run are the tables of its bench.json (a round trip through JSON)."""
    for run in runs.values():
        doc, printed = run["doc"], run["stdout"].splitlines()
        settings = Settings(**{k: v for k, v in doc["settings"].items() if k not in ("D", "dtype")})
        again = _capture(lambda out: print_report(derive(rows_of(doc)), settings, doc["not_run"], out))  # noqa: B023
        assert printed[:-1] == again.splitlines()
        assert all(line == line.rstrip() for line in printed)
        assert [r.to_json() for r in rows_of(doc)] == doc["rows"]
        md = (run["out"] / "bench.md").read_text()
        assert "W1 masked tanh SimpleRNN: h' = tanh(x W + h U + b)" in md and "Notes:" in md
        for row in rows_of(doc):
            if row.status == "ok":
                assert f" {cell(row, False)} |" in md


def test_notes_explain_every_cell_that_is_not_a_figure(runs: dict[str, dict[str, Any]]) -> None:
    rows = _rows(runs)
    lines = notes(rows, {})
    for row in rows:
        if row.status in ("error", "missing"):
            assert any(line.startswith(f"{row.backend} {row.impl} ") and row.error in line for line in lines), row
    for backend, _ in KERAS_FAILURES & {(b, "W3") for b in runs}:
        assert any(f"{backend} keras3 W3" in line and "limitation of Keras 3" in line for line in lines)


def test_plots_have_a_panel_per_backend_and_workload(runs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = derive(_rows(runs))
    assert plot_ratios(rows, tmp_path / "ratios.png", (4, 2, 8)) == list(runs)
    assert plot_times(rows, tmp_path / "times.png", 2, 8) == [f"{b}, {w}" for w in WORKLOADS for b in runs]
    for path in (tmp_path / "ratios.png", tmp_path / "times.png", *(r["out"] / "bench.png" for r in runs.values())):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_numpy_only_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("jax", "torch", "tensorflow", "keras", "tf_keras"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert main([*TINY, "--out", str(tmp_path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "rnnscan bench: 4 figures to time on numpy",
        "rnnscan bench: not run: jax is not installed: pip install 'rnnscan[jax]'; torch is not installed: "
        "pip install 'rnnscan[torch]'; tensorflow is not installed: pip install 'rnnscan[tensorflow]'",
    ]
    rows = rows_of(json.loads((tmp_path / "bench.json").read_text()))
    assert {r.backend for r in rows} == {"numpy"} and sum(r.status == "missing" for r in rows) == 2
    assert "numpy keras3 W1, W3 (2 cells): needs keras: pip install 'rnnscan[bench]'" in out
    assert out.splitlines()[-1].startswith("4 figures timed in ") and "\njax\n" not in out


def test_an_unsteady_figure_is_measured_again_and_flagged() -> None:
    now = [0.0]
    calls = {"steady": 0, "bursty": 0}

    def clock() -> float:
        return now[0]

    def steady() -> None:
        calls["steady"] += 1
        now[0] += 1.0

    def bursty() -> None:  # every other call stalls for 9 s, as a descheduled thread team does
        calls["bursty"] += 1
        now[0] += 10.0 if calls["bursty"] % 2 else 1.0

    (first, _), (second, _) = measure([steady, bursty], repeats=4, min_sample_s=0.0, max_total_s=1e9, clock=clock)  # type: ignore[misc]
    assert first.samples == second.samples == 8  # both measured again, still interleaved
    assert first.steady and first.median_s == 1.0
    assert not second.steady and second.median_s > UNSTEADY * second.min_s
    ((alone, _),) = measure([steady], repeats=4, min_sample_s=0.0, max_total_s=1e9, clock=clock)  # type: ignore[misc]
    assert alone.samples == 4 and alone.steady and alone.warmup_s == 1.0


@pytest.mark.parametrize("spell", [5, 10**9], ids=["passing spell", "lasting"])
def test_a_call_slower_than_one_over_more_steps_is_measured_again(spell: int) -> None:
    """The anomaly of issue 14 (W1 at T=10 slower per call than at T=100): measured again, flagged if it stays."""
    calls = {4: 0, 40: 0}

    def build(data: Any, mode: str) -> Any:
        steps = data.x.shape[1]

        def run() -> np.ndarray:
            calls[steps] += 1
            time.sleep(0.2 if steps == 4 and calls[steps] <= spell else 0.001 if steps == 4 else 0.02)
            return np.zeros((2, steps, 8), np.float32)

        return run

    impl = Impl("numpy", "spell", build)
    rows = [Row("numpy", "spell", "W1", t, 2, 8, "forward") for t in (4, 40)]
    run_all(rows, lambda _: impl, Settings(repeats=3, min_sample_s=0.0, max_total_s=100.0), lambda _: None)
    assert calls == {4: 10, 40: 5}  # warm-up, sizing call, 3 samples; T=4 twice
    first, second = rows
    assert second.steady and first.steady == (spell == 5)
    assert (first.median_s < second.median_s) == (spell == 5)  # type: ignore[operator]


def test_cells_flag_what_needs_a_second_look() -> None:
    group = [Row("jax", name, "W1", 10, 2, 8, "forward", rnnscan=name == "rnnscan") for name in ("rnnscan", "a", "b")]
    for row, median, checksum in zip(group, (2e-3, 1e-3, 4e-3), ([1.0, 2.0], [1.0, 2.0], [1.5, 2.0])):
        row.status, row.median_s, row.min_s, row.max_s, row.warmup_s = "ok", median, median, median, 0.19
        row.per_step_s, row.checksum = median / 10, checksum
    group[1].steady = False
    derive(group)
    assert [r.ratio for r in group] == [2.0, 1.0, 4.0] and [r.agrees for r in group] == [True, True, False]
    assert cell(group[0], True) == "200 x2.00\n200-200\n190 ms"
    assert cell(group[1], False) == "100 x1.00~" and cell(group[2], False) == "400 x4.00 (differs!)"
    assert any(line.startswith("~ (1 figures)") for line in notes(group, {}))
    assert any("(differs!)" in line and "jax b W1" in line for line in notes(group, {}))
    assert (duration(2.13), duration(0.0042), us(5.25e-6), us(1.2345e-3)) == ("2.1 s", "4.2 ms", "5.25", "1234")


def test_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        cli(["bench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "W2 LSTM step (states h, c)" in text and QUICK_TIME in " ".join(text.split())
    assert max(len(line) for line in text.splitlines()) <= 80
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"`--quick` (146 figures) takes {QUICK_TIME}" in " ".join(readme.split())  # one claim, in both
    with pytest.raises(SystemExit) as exit_info:
        cli(["bench", "--keras-lstm", "--help"])  # the Keras layers benchmark's own flags
    assert exit_info.value.code == 0 and "--no-compile" in capsys.readouterr().out
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's setting stays; a default fills the rest
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    assert cli(["bench", "--backends", "cobol"]) == 2
    assert "cobol" in capsys.readouterr().err
    assert (os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["GRPC_VERBOSITY"]) == ("0", "ERROR")


def _capture(write: Any) -> str:
    buffer = io.StringIO()
    write(buffer)
    return buffer.getvalue()
