"""rnn() from many threads at once, and a process's first call: each in a fresh process, where a
container type or a backend is new (the moment the shared registries are written).

- Threads that meet one new dict or list subclass at once (or TF's ``ListWrapper``), eight at a
  time, every round a fresh type: each call's results equal the one-thread call's.
- A process whose first ``rnn()`` call is inside ``torch.compile`` compiles once: importing a
  backend leaves no guard behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from frameworks import Framework, installed

THREADS, ROUNDS = 8, 6

# Run in a fresh process: `backend` names the framework; prints one JSON line.
THREADED = textwrap.dedent(
    """
    import json, sys, threading
    import numpy as np
    import rnnscan
    from rnnscan._frameworks import ops

    fw = ops(sys.argv[1])
    threads, rounds = int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)).astype("float32")
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    h0 = rng.normal(size=(2, 4)).astype("float32")

    def step(x_t, states):
        state = states[0]
        h = fw.tanh(x_t @ fw.asarray(w) + (state["h"] if isinstance(state, dict) else state[0]))
        return h, [type(state)({"h": h}) if isinstance(state, dict) else type(state)([h])]

    def call(state):
        return fw.to_numpy(rnnscan.rnn(step, fw.asarray(x), [state])[1])

    expected = call({"h": fw.asarray(h0)})
    errors, results = [], []
    for round_ in range(rounds):
        made = [type(f"Dict{round_}", (dict,), {}), type(f"List{round_}", (list,), {})]
        barrier = threading.Barrier(threads)

        def run(i):
            cls = made[i % 2]
            state = cls({"h": fw.asarray(h0)}) if cls.__base__ is dict else cls([fw.asarray(h0)])
            barrier.wait()
            try:
                results.append(bool(np.allclose(call(state), expected, atol=1e-6)))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")

        workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
    print(json.dumps({"errors": errors[:3], "n_errors": len(errors), "equal": results.count(True),
                      "calls": len(results)}))
    """
)


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_threads_meet_new_container_types_at_once(backend: Framework) -> None:
    """8 threads x a fresh dict and list subclass per round, in a fresh process; on main this
    raised optree's "PyTree type ... is already registered in namespace 'rnnscan'"."""
    found = _run(THREADED, backend.name, str(THREADS), str(ROUNDS))
    assert found == {"errors": [], "n_errors": 0, "equal": THREADS * ROUNDS, "calls": THREADS * ROUNDS}


LIST_WRAPPER = textwrap.dedent(
    """
    import json, threading
    import numpy as np, tensorflow as tf
    import rnnscan
    from tensorflow.python.trackable.data_structures import ListWrapper

    rng = np.random.default_rng(1)
    x, h0, c0 = (rng.normal(size=shape).astype("float32") for shape in ((2, 4, 3), (2, 3), (2, 3)))

    def step(x_t, states):  # two states, each a ListWrapper, as Keras 3's StackedRNNCells passes them
        (h,), (c,) = states
        c = tf.tanh(x_t + c)
        return h + c, ListWrapper([ListWrapper([h + c]), ListWrapper([c])])

    h, c, expected = h0, c0, []  # by hand
    for t in range(4):
        c = np.tanh(x[:, t] + c)
        h = h + c
        expected.append(h)
    expected = np.stack(expected, 1)
    errors, equal = [], []
    barrier = threading.Barrier(8)

    def run():
        states = [ListWrapper([tf.constant(h0)]), ListWrapper([tf.constant(c0)])]
        barrier.wait()
        try:
            got = rnnscan.rnn(step, tf.constant(x), states)[1]
            equal.append(bool(np.allclose(got.numpy(), expected, atol=1e-5)))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")

    workers = [threading.Thread(target=run) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    print(json.dumps({"errors": errors[:3], "equal": equal.count(True)}))
    """
)


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow is not installed")
def test_threads_meet_tf_list_wrappers_at_first_use() -> None:
    assert _run(LIST_WRAPPER) == {"errors": [], "equal": 8}


COMPILED_FIRST = textwrap.dedent(
    """
    import json
    import torch
    from torch._dynamo.testing import CompileCounter
    import rnnscan

    counter = CompileCounter()
    torch.manual_seed(0)
    w = torch.randn(3, 4)

    def step(x_t, states):
        h = torch.tanh(x_t @ w + states[0])
        return h, [h]

    @torch.compile(backend=counter)
    def f(x, h0):
        return rnnscan.rnn(step, x, [h0])[1]

    for _ in range(3):
        x, h0 = torch.randn(2, 5, 3), torch.randn(2, 4)
        equal = torch.allclose(f(x, h0), rnnscan.rnn(step, x, [h0])[1], atol=1e-6)
    print(json.dumps({"frames": counter.frame_count, "equal": bool(equal)}))
    """
)


@pytest.mark.skipif(not installed("torch"), reason="torch is not installed")
def test_first_call_inside_torch_compile_compiles_once() -> None:
    """On main, the lazy backend import left a guard on len(sys.modules): two compilations."""
    assert _run(COMPILED_FIRST) == {"frames": 1, "equal": True}
