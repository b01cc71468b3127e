"""rnnscan.rnn under each framework's distributed engine gives the single-device numbers.

Each engine needs a fresh process (XLA reads its virtual device count once, TensorFlow its
logical devices once, DDP spawns ranks), so the checks live in worker scripts under
tests/distributed/, each printing one JSON line per check; the examples of docs/scaling.md
run the same way, each printing what the page shows after it. All of them start at the
first test that needs one, a few at a time, each under a timeout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ROOT / "tests" / "distributed"
PAGE = ROOT / "docs" / "scaling.md"
TIMEOUT_S = 400  # a bound on a hung process, far above the few tens of seconds each takes
PARALLEL = 3

# The checks each worker must report, all passing.
CHECKS = {
    "jax_spmd": [
        "data_parallel[mask]",
        "data_parallel[mask_go_backwards_zero_output]",
        "data_parallel[input_length_go_backwards]",
        "data_parallel[input_length_last_output_only]",
        "data_parallel[time_major_mask_go_backwards]",
        "hand_written_scan_all_reduces_as_rnnscan",
        "shard_map[mask_go_backwards_zero_output]",
        "shard_map[time_major_mask_go_backwards]",
        "shard_map[input_length_last_output_only]",
        "shard_map[mask_go_backwards_zero_output, check_vma: JAX sums in the loop]",
        "shard_map[mask_go_backwards_zero_output, check_vma, weights cast to varying]",
        "shard_map[check_vma, output_not_a_state]",
        "shard_map[check_vma=False, output_not_a_state]",
        "shard_map[check_vma, initial_state_made_in_the_shard]",
        "shard_map[check_vma=False, initial_state_made_in_the_shard]",
        "shard_map[input_length_go_backwards, full length in every shard]",
        "shard_map[input_length_go_backwards, local rule]",
        "model_parallel[mask]",
        "model_parallel[input_length_go_backwards]",
        "model_parallel[time_major_mask_go_backwards]",
    ],
    "torch_ddp": [
        "torch_spawn_gloo_ranks_finish",
        "ddp_parameters_match_one_process",
        "fsdp2_parameters_match_one_process",
    ],
    "tf_mirrored": ["mirrored_strategy_matches_one_device"],
    "keras_data_parallel": ["keras_data_parallel_fit_matches_one_device"],
}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def page_examples() -> list[tuple[str, str]]:
    """The page's ```py blocks (whole programs, each needing its own process) and the ```text after each."""
    text = PAGE.read_text()
    blocks = list(FENCE.finditer(text))
    found = []
    for block, after in zip(blocks, blocks[1:] + [None]):
        if block.group(1) == "py":
            assert after is not None and after.group(1) == "text", f"no ```text after the block at {block.start()}"
            found.append((block.group(2), after.group(2)))
    return found


EXAMPLES = page_examples()


def _run(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    try:
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:  # run() has killed it
        out = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        return subprocess.CompletedProcess(args, -9, out, f"timed out after {TIMEOUT_S} s")


@pytest.fixture(scope="module")
def runs():
    """Every worker and every page example, started together (a few at a time)."""
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(PARALLEL) as pool:
        futures: dict[str, Future] = {}
        for name in CHECKS:
            futures[name] = pool.submit(_run, [sys.executable, str(WORKERS / f"{name}.py")], str(ROOT))
        for i, (code, _) in enumerate(EXAMPLES):
            path = Path(tmp) / f"example_{i}.py"
            path.write_text(code)
            futures[f"example_{i}"] = pool.submit(_run, [sys.executable, str(path)], tmp)
        yield {name: future.result() for name, future in futures.items()}


def _results(run: subprocess.CompletedProcess) -> dict[str, dict]:
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {line["check"]: line for line in lines}


def _why(run: subprocess.CompletedProcess) -> str:
    return f"exit status {run.returncode}\nstdout:\n{run.stdout[-4000:]}\nstderr:\n{run.stderr[-4000:]}"


@pytest.mark.parametrize("worker", list(CHECKS))
def test_worker_reports_every_check(runs, worker):
    run = runs[worker]
    assert run.returncode == 0, _why(run)
    assert sorted(_results(run)) == sorted(CHECKS[worker]), _why(run)


@pytest.mark.parametrize("worker,check", [(w, c) for w, names in CHECKS.items() for c in names])
def test_check(runs, worker, check):
    result = _results(runs[worker]).get(check)
    assert result is not None, _why(runs[worker])
    assert result["ok"], f"{result['error']}\n{result.get('traceback', '')}"


def test_page_has_an_example_per_engine():
    engines = {
        "jax": "NamedSharding",
        "jax shard_map": "shard_map",
        "torch": "DistributedDataParallel",
        "tensorflow": "MirroredStrategy",
        "keras": "DataParallel",
    }
    for engine, marker in engines.items():
        assert any(marker in code for code, _ in EXAMPLES), f"docs/scaling.md has no {engine} example"


@pytest.mark.parametrize("i", range(len(EXAMPLES)), ids=[f"block{i}" for i in range(len(EXAMPLES))])
def test_page_example_prints_what_the_page_shows(runs, i):
    run = runs[f"example_{i}"]
    assert run.returncode == 0, _why(run)
    expected = EXAMPLES[i][1]
    assert [s.rstrip() for s in run.stdout.strip().splitlines()] == expected.strip().splitlines(), _why(run)
