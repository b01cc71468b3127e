"""``python -m rnnscan bench``: tiny runs of the real command, one per backend and one per suite, and the report
made from them.

No timing assertions: the figures are checked against each other and against the
printed tables (made again from the JSON), never against a speed.
"""

from __future__ import annotations

import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnnscan.__main__ import C_LOG_LINE, quiet_stderr
from rnnscan.__main__ import main as cli
from rnnscan.bench import SUITES, Settings, main
from rnnscan.bench import long as long_suite
from rnnscan.bench.grid import QUICK_TIME
from rnnscan.bench.harness import Row, run_all
from rnnscan.bench.long_report import record, to_row
from rnnscan.bench.peers import BACKENDS, KERAS3, MODES, XLA_MODES, Impl, implementations, modes_of
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
        for mode in modes_of(impl.backend, quick=True)
    ]
    assert len(_rows(runs)) == len(rows) == len(expected)
    for impl, workload, mode in expected:
        row = rows[impl.backend, impl.name, workload, mode]
        assert (row.T, row.B, row.U) == (4, 2, 8)
        if impl.missing() is not None:
            assert row.status == "missing" and 'pip install -e ".[' in row.error
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
        if row.timed_together == fastest.timed_together:  # timed in the same rounds: the median of their ratios
            expected = statistics.median(a / b for a, b in zip(row.samples_s, fastest.samples_s))
        else:  # Keras 3 in a worker of its own
            assert KERAS3 in (row.impl, fastest.impl)
            expected = row.median_s / fastest.median_s  # type: ignore[operator]
        assert (row.fastest_peer, row.ratio) == (fastest.impl, pytest.approx(expected))
        assert len(row.samples_s) == row.samples and row.median_s == statistics.median(row.samples_s)


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


@pytest.mark.skipif(not (installed("tensorflow") and installed("keras")), reason="needs TensorFlow and Keras 3")
def test_tensorflow_xla_passes_and_keras_in_this_process(tmp_path: Path) -> None:
    """The full grid times TensorFlow's passes under XLA too, each against the XLA peers alone; Keras 3 on
    TensorFlow (its default backend) runs in this process, interleaved with the other peers."""
    tiny = ["--T", "4", "--B", "2", "--U", "8", "--repeats", "2", "--workloads", "W1", "--backends", "tensorflow"]
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    command = [sys.executable, "-m", "rnnscan", "bench", *tiny, "--no-progress", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, env=env, timeout=600)
    rows = rows_of(json.loads((tmp_path / "bench.json").read_text()))
    assert sorted((r.impl, r.mode) for r in rows) == sorted(
        (impl, mode) for impl in ("rnnscan", "while_loop by hand", "tf_keras", KERAS3) for mode in MODES + XLA_MODES
    )
    for row in rows:
        assert row.status == "ok" and row.agrees, row.traceback or row.error
        same = [r for r in rows if r.mode == row.mode and not r.rnnscan]
        assert row.fastest_peer == min(same, key=lambda r: r.median_s or 0.0).impl
        assert {r.timed_together for r in rows if r.mode == row.mode} == {row.timed_together}  # the same rounds
    (keras,) = {r.note for r in rows if r.impl == KERAS3}
    assert keras.startswith("Keras 3.") and keras.endswith("tf.function, in this process")


def test_a_numpy_only_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("jax", "torch", "tensorflow", "keras", "tf_keras"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    assert main([*TINY, "--out", str(tmp_path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "rnnscan bench: 4 figures to time on numpy",
        "rnnscan bench: not run: "
        + "; ".join(f'{b} is not installed: pip install -e ".[{b}]" (in a checkout of rnnscan)' for b in BACKENDS[1:]),
    ]
    rows = rows_of(json.loads((tmp_path / "bench.json").read_text()))
    assert {r.backend for r in rows} == {"numpy"} and sum(r.status == "missing" for r in rows) == 2
    assert 'numpy keras3 W1, W3 (2 cells): needs keras: pip install -e ".[bench]"' in out
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
    assert all(f"--suite {name}" in text for name in SUITES) and "--cases" in text and "--max-gib" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    performance = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    assert f"`--quick` (146 figures) takes {QUICK_TIME}" in " ".join(performance.split())  # one claim, in both
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's setting stays; a default fills the rest
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    assert cli(["bench", "--backends", "cobol"]) == 2
    assert "cobol" in capsys.readouterr().err
    assert (os.environ["TF_CPP_MIN_LOG_LEVEL"], os.environ["GRPC_VERBOSITY"]) == ("0", "ERROR")
    assert cli(["bench", "--suite", "keras-lstm", "--cases", "nothing"]) == 2
    assert "nothing" in capsys.readouterr().err


NOISE = "I0000 00:00:1796681283.263826    4820 port.cc:153] oneDNN custom operations are on.\n"
NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"


@pytest.mark.parametrize("level", ["3", "0"])
def test_log_lines_written_before_logging_starts_follow_the_level(
    level: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """What C++ code writes to stderr at import, before TensorFlow reads TF_CPP_MIN_LOG_LEVEL: filtered by it."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    with quiet_stderr():
        os.write(2, (NOTICE + NOISE + "E0000 00:00:1.5  4820 cuda.cc:52] failed\nreal trouble\n").encode())
    err = capfd.readouterr().err
    expected = (
        "real trouble\n"
        if level == "3"
        else NOTICE + NOISE + "E0000 00:00:1.5  4820 cuda.cc:52] failed\nreal trouble\n"
    )
    assert err == expected


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow not installed")
@pytest.mark.parametrize("user_level", [None, "0"])
def test_the_bench_prints_no_tensorflow_log_lines(user_level: str | None, tmp_path: Path) -> None:
    """No C++ log line of TensorFlow on stderr or stdout, unless the user asks for them: their level wins."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env |= {"TF_CPP_MIN_LOG_LEVEL": user_level} if user_level else {}
    command = [sys.executable, "-m", "rnnscan", "bench", *TINY, "--workloads", "W1", "--backends", "tensorflow"]
    done = subprocess.run([*command, "--no-progress", "--out", str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stderr + done.stdout).splitlines()
    logged = [line for line in lines if C_LOG_LINE.match(line) or line.startswith(NOTICE.strip())]
    if user_level is None:
        assert logged == [] and done.stderr.splitlines()[0] == "rnnscan bench: 8 figures to time on tensorflow"
    else:  # TensorFlow's own behaviour at level 0: nothing filtered (what it prints depends on the machine)
        assert json.loads((tmp_path / "bench.json").read_text())["suite"] == "grid"


@pytest.mark.skipif(not (installed("keras") and installed("jax")), reason="keras or jax not installed")
def test_keras_lstm_suite(tmp_path: Path) -> None:
    """One case on one Keras backend, two steps a side: the rows, the JSON, the report and the plot."""
    command = [sys.executable, "-m", "rnnscan", "bench", "--suite", "keras-lstm", "--backends", "jax"]
    command += ["--cases", "mask,fused", "--repeats", "2", "--warmup", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "keras_lstm.json").read_text())
    assert (doc["schema"], doc["suite"], doc["settings"]["cases"]) == (3, "keras-lstm", ["mask", "fused"])
    rows = {r.impl: r for r in rows_of(doc)}
    assert len(doc["rows"]) == 2 and set(rows) == {KERAS3, "rnnscan"}  # jax takes no fused path: fused not shown
    for row in rows.values():
        assert (row.workload, row.status, row.note, row.samples) == ("mask", "ok", "generic loop", 2), row
        assert row.agrees and row.warmup_s and row.min_s <= row.median_s <= row.max_s  # type: ignore[operator]
    assert rows["rnnscan"].ratio == pytest.approx(rows["rnnscan"].median_s / rows[KERAS3].median_s)  # type: ignore[operator]
    assert rows["rnnscan"].extra["target"] == 1.1
    speedup = f"{rows[KERAS3].median_s / rows['rnnscan'].median_s:.2f}x"  # type: ignore[operator]
    line = next(line for line in done.stdout.splitlines() if line.startswith("| jax | mask |"))
    assert f"| {speedup} | ≥ 1.10x |" in line and line in (tmp_path / "keras_lstm.md").read_text()
    assert (tmp_path / "keras_lstm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not installed("jax"), reason="jax not installed")
def test_long_sequences_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's plan on tiny sizes, every point in its worker: remat off and on, one extrapolated, unroll=k."""
    tiny = long_suite.Config(both_T=(8, 16), remat_only_T=(32,), repeats=1, unroll_T=8, unroll_ks=(1, 2))
    monkeypatch.setattr(long_suite, "QUICK", long_suite.Config(**{**tiny.__dict__, "unroll_repeats": 2}))
    assert main(["--suite", "long", "--quick", "--backends", "jax", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "long_sequences.json").read_text())
    assert (doc["schema"], doc["suite"], doc["settings"]["both_T"]) == (3, "long", [8, 16])
    rows = rows_of(doc)
    lstm = {(r.T, r.extra["remat"]): r for r in rows if r.extra.get("kind") == "lstm"}
    assert set(lstm) == {(t, remat) for t in (8, 16, 32) for remat in (False, True)}
    assert lstm[32, False].status == "not run" and lstm[32, False].extra["extrapolated"]["from_T"] == [8, 16]
    assert lstm[32, False].extra["compiled"]["xla_temp_size_in_bytes"] > 0  # compiled, not run
    for (t, remat), row in lstm.items():
        if (t, remat) != (32, False):
            assert row.status == "ok" and row.extra["xla_temp_size_in_bytes"] > 0 and row.samples == 1, row
        assert to_row(record(row)).to_json() == row.to_json()
    np.testing.assert_allclose(lstm[16, True].extra["grad_norms"], lstm[16, False].extra["grad_norms"], rtol=1e-4)
    unroll = [r for r in rows if "k" in r.extra]
    assert sorted((r.mode, r.extra["k"]) for r in unroll) == [(m, k) for m in sorted(MODES) for k in (1, 2)]
    assert all(r.status == "ok" and r.agrees is not False for r in unroll)
    md = (tmp_path / "long_sequences.md").read_text()
    assert md.startswith("# Long sequences") and "| JAX jit | 16 |" in md and "Targets at T=16:" in md
    assert "| JAX jit, forward | " in md and (tmp_path / "long_sequences.png").read_bytes()[:4] == b"\x89PNG"


def test_the_recorded_results_are_in_the_one_schema() -> None:
    """docs/bench holds each suite's recorded run, in the schema the report reads (no code of its own)."""
    recorded = Path(__file__).resolve().parents[1] / "docs" / "bench"
    suites = {p.stem: json.loads(p.read_text())["suite"] for p in recorded.glob("*.json")}
    assert suites == {
        "quick": "grid",
        "tensorflow": "grid",  # TensorFlow's rows of docs/performance.md
        "keras_lstm": "keras-lstm",
        "long_sequences": "long",
        "parallel_torch": "parallel",  # the parallel suite's two runs (docs/parallel.md)
        "parallel_others": "parallel",
    }
    for stem in suites:
        doc = json.loads((recorded / f"{stem}.json").read_text())
        assert doc["schema"] == 3 and {"date", "command", "machine", "settings", "rows"} <= doc.keys()
        assert [r.to_json() for r in rows_of(doc)] == doc["rows"] and doc["command"].startswith("python -m rnnscan")


def _capture(write: Any) -> str:
    buffer = io.StringIO()
    write(buffer)
    return buffer.getvalue()
