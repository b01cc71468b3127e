"""rnnscan.rnn under each framework's distributed engine gives the single-device numbers.

Each engine needs a fresh process (XLA reads its virtual device count once, TensorFlow its
logical devices once, DDP spawns ranks), so the checks live in worker scripts under
tests/distributed/, each printing one JSON line per check; the examples of docs/scaling.md
run the same way, each printing what the page shows after it. All of them start at the
first test that needs one, a few at a time, each under a timeout.
"""

from __future__ import annotations

import importlib.util
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
NEEDS = {
    "jax_spmd": ("jax",),
    "torch_ddp": ("torch",),
    "tf_mirrored": ("tensorflow",),
    "keras_data_parallel": ("keras", "jax"),
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


def _needs(code: str) -> tuple[str, ...]:
    imported = {m for m in ("jax", "torch", "tensorflow", "keras") if re.search(rf"^import {m}\b", code, re.M)}
    if 'os.environ["KERAS_BACKEND"] = "jax"' in code:
        imported.add("jax")
    return tuple(sorted(imported))


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _skip_if_missing(modules: tuple[str, ...]) -> None:
    # The one reason to skip: a framework not installed (CI installs all; RNNSCAN_NO_SKIPS fails a skip).
    if missing := _missing(modules):
        pytest.skip(f"{', '.join(missing)} not installed")


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
            if _missing(NEEDS[name]):
                continue
            futures[name] = pool.submit(_run, [sys.executable, str(WORKERS / f"{name}.py")], str(ROOT))
        for i, (code, _) in enumerate(EXAMPLES):
            if _missing(_needs(code)):
                continue
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
    _skip_if_missing(NEEDS[worker])
    run = runs[worker]
    assert run.returncode == 0, _why(run)
    assert sorted(_results(run)) == sorted(CHECKS[worker]), _why(run)


@pytest.mark.parametrize("worker,check", [(w, c) for w, names in CHECKS.items() for c in names])
def test_check(runs, worker, check):
    _skip_if_missing(NEEDS[worker])
    result = _results(runs[worker]).get(check)
    assert result is not None, _why(runs[worker])
    replay = f"replay: RNNSCAN_DIST_SEED={result['seed']} python tests/distributed/{worker}.py"
    assert result["ok"], f"{result['error']}\n{result.get('traceback', '')}\n{replay}"


def test_page_has_an_example_per_engine():
    engines = {
        "jax": "NamedSharding",
        "jax shard_map": "shard_map",
        "torch": "DistributedDataParallel",
        "tensorflow": "MirroredStrategy",
        "keras": "DataParallel",
    }
    assert [_needs(code) for code, _ in EXAMPLES] == [("jax",), ("jax",), ("torch",), ("tensorflow",), ("jax", "keras")]
    for engine, marker in engines.items():
        assert any(marker in code for code, _ in EXAMPLES), f"docs/scaling.md has no {engine} example"


@pytest.mark.parametrize("i", range(len(EXAMPLES)), ids=[f"block{i}" for i in range(len(EXAMPLES))])
def test_page_example_prints_what_the_page_shows(runs, i):
    _skip_if_missing(_needs(EXAMPLES[i][0]))
    run = runs[f"example_{i}"]
    assert run.returncode == 0, _why(run)
    expected = EXAMPLES[i][1]
    assert [s.rstrip() for s in run.stdout.strip().splitlines()] == expected.strip().splitlines(), _why(run)


HLO = """HloModule m, entry_computation_layout={(f32[2,3]{1,0})->f32[2,3]{1,0}}

%add (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add = f32[] add(%x, %y)
}

%fused_gather (p: f32[2,3]) -> f32[4,3] {
  %p = f32[2,3]{1,0} parameter(0)
  ROOT %all-gather.1 = f32[4,3]{1,0} all-gather(%p), channel_id=2, dimensions={0}
}

%body.1 (param: (s32[], f32[2,3])) -> (s32[], f32[2,3]) {
  %param = (s32[], f32[2,3]{1,0}) parameter(0)
  %h = f32[2,3]{1,0} get-tuple-element(%param), index=1
  %g = f32[4,3]{1,0} fusion(%h), kind=kLoop, calls=%fused_gather
  %i = s32[] get-tuple-element(%param), index=0
  ROOT %t = (s32[], f32[2,3]{1,0}) tuple(%i, %h)
}

%cond.1 (param.1: (s32[], f32[2,3])) -> pred[] {
  %param.1 = (s32[], f32[2,3]{1,0}) parameter(0)
  ROOT %c = pred[] constant(true)
}

ENTRY %main (a: f32[2,3]) -> f32[2,3] {
  %a = f32[2,3]{1,0} parameter(0)
  %ar = (f32[2,3]{1,0}, f32[]) all-reduce-start(%a), channel_id=1, to_apply=%add
  %z = s32[] constant(0)
  %init = (s32[], f32[2,3]{1,0}) tuple(%z, %a)
  %w = (s32[], f32[2,3]{1,0}) while(%init), condition=%cond.1, body=%body.1
  ROOT %out = f32[2,3]{1,0} get-tuple-element(%w), index=1
}
"""


def test_hlo_reader_finds_the_collectives_inside_and_outside_loops():
    sys.path.insert(0, str(WORKERS))
    from hlo import collectives, operand_shapes

    program = collectives(HLO)
    assert [w.name for w in program.whiles] == ["w"]
    assert [(i.name, i.opcode) for i in program.in_loops] == [("all-gather.1", "all-gather")]
    assert [(i.name, i.opcode) for i in program.outside] == [("ar", "all-reduce")]
    assert operand_shapes(program.outside[0]) == [(2, 3), ()]
    assert operand_shapes(program.whiles[0]) == [(), (2, 3)]
