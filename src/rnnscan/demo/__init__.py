"""``python -m rnnscan demo``: train a custom recurrent cell with ``rnnscan.rnn`` on real data.

A character-level language model of the Python standard library's own source
(present, offline, on every machine with Python): each source line is one
variable-length sequence, padded and masked; the cell is a GRU variant written
as an rnnscan step function (:func:`rnnscan.demo._model.gru_step`) that gets the
line's indentation depth through ``constants``. It trains on the best installed
backend (JAX, then PyTorch, then TensorFlow), reports bits per character on
held-out files, generates a few lines, and writes the training curve as a PNG.
With NumPy as its only framework (and the ``demo`` extra: matplotlib, tqdm) it
runs the untrained forward pass and says how to install a backend that can train.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._data import BOS, CHARS, EOL, MAX_LEN, Corpus, decode, load_corpus, make_batch

TRAINING_BACKENDS = ("jax", "torch", "tensorflow")
BACKENDS = (*TRAINING_BACKENDS, "numpy")
INSTALL = {name: f'pip install -e ".[{name},demo]"' for name in TRAINING_BACKENDS}  # from a checkout of rnnscan

HIDDEN = 64
BATCH = 32
STEPS = 1000
LR = 1.5e-2
EVAL_LINES = 2048
EVAL_BATCH = 512
SAMPLE_INDENTS = (0, 0, 1, 1, 2, 2)
TEMPERATURE = 0.6


SUMMARY = "train a custom recurrent cell with rnnscan.rnn on Python's own source code"
DESCRIPTION = """\
Train a character-level language model of the Python standard library's own
source (each line a masked sequence) with a GRU variant written as an rnnscan
step function, on JAX, PyTorch or TensorFlow; report bits per character on
held-out files, sample a few lines, and write metrics.json and the training
curve (training_curve.png) to --out. With NumPy as the only framework, run the
untrained forward pass (the demo needs matplotlib and tqdm either way). The
defaults take about 30 s on JAX, 50 s on TensorFlow, 84 s on PyTorch (2 cores)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line flags."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="framework to train with (default: the first installed of jax, torch, tensorflow; "
        "numpy runs the untrained forward pass only)",
    )
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default: {STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, weights and sampling (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("rnnscan-demo"), help="output folder (default: rnnscan-demo/)")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the demo of parsed flags; the exit status (2: a problem the user can fix, reported on stderr)."""
    try:
        run(backend=args.backend, steps=args.steps, seed=args.seed, out=args.out)
    except DemoError as error:
        print(f"rnnscan demo: {error}", file=sys.stderr)
        return 2
    return 0


class DemoError(Exception):
    """A problem the user can fix (a missing package, a bad flag), reported without a traceback."""


def installed(name: str) -> bool:
    """True if the framework ``name`` is installed and imports."""
    if importlib.util.find_spec(name) is None:
        return False
    from ..__main__ import quiet_stderr

    try:
        with quiet_stderr():  # a framework's start-up log lines filtered by its log level
            importlib.import_module(name)
    except Exception:  # a broken installation counts as absent
        return False
    return True


def choose_backend(requested: str | None) -> str:
    """The requested backend, checked; else the first installed training backend; else numpy."""
    if requested is not None:
        if requested != "numpy" and not installed(requested):
            raise DemoError(f"--backend {requested}: {requested} is not installed; {INSTALL[requested]}")
        return requested
    return next((name for name in TRAINING_BACKENDS if installed(name)), "numpy")


def _demo_packages() -> tuple[Any, Any]:
    """tqdm and matplotlib (Agg), or a DemoError saying how to install them."""
    try:
        import matplotlib
        from tqdm.auto import tqdm
    except ImportError as error:
        raise DemoError(
            f'the demo needs matplotlib and tqdm ({error.name} is missing): pip install -e ".[demo]" (from a checkout)'
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return tqdm, plt


def run(
    backend: str | None = None,
    steps: int = STEPS,
    seed: int = 0,
    out: Path | str = "rnnscan-demo",
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the demo, printing as it goes; returns the metrics also written to ``out/metrics.json``."""
    stream = stream or sys.stdout
    start = time.perf_counter()
    if steps < 1:
        raise DemoError(f"--steps must be at least 1, got {steps}")
    tqdm, plt = _demo_packages()
    backend = choose_backend(backend)
    say = lambda *lines: print(*lines, sep="\n", file=stream, flush=True)  # noqa: E731
    from ._model import init_params
    from ._train import TRAINERS

    version = getattr(sys.modules.get(backend) or importlib.import_module(backend), "__version__", "")
    say(f"rnnscan demo: a character-level language model of Python's own standard library, on {backend} {version}")
    corpus = load_corpus(seed)
    say(
        f"data: {len(corpus.train)} lines from {len(corpus.train_files)} files of {corpus.stdlib}; "
        f"{len(corpus.held_out)} held-out lines from {len(corpus.held_out_files)} other files",
        f"      each line a sequence of 1 to {MAX_LEN + 1} steps, padded to {MAX_LEN + 1} and masked",
    )
    params = init_params(HIDDEN, seed)
    n_params = sum(p.size for p in params.values())
    say(
        f"model: a GRU variant with {HIDDEN} units written as an rnnscan step function "
        f"(rnnscan.demo._model.gru_step), {n_params} parameters;",
        "       the line's indentation depth reaches every step through rnnscan.rnn(..., constants=[context])",
    )
    model = TRAINERS[backend](params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    eval_index = np.sort(rng.choice(len(corpus.held_out), min(EVAL_LINES, len(corpus.held_out)), replace=False))
    baseline = unigram_bits(corpus, eval_index)
    metrics: dict[str, Any] = {"backend": backend, "version": version, "seed": seed, "hidden": HIDDEN}

    if backend == "numpy":
        say(
            "",
            "NumPy cannot train: it has no automatic differentiation, so there are no gradients to follow.",
            "Running the untrained model's forward pass with rnnscan.rnn on NumPy arrays instead.",
        )
        t0 = time.perf_counter()
        bits = held_out_bits(model, corpus, eval_index)
        seconds = time.perf_counter() - t0
        say(
            f"held-out: {bits:.3f} bits/char with untrained weights (forward pass over {len(eval_index)} lines "
            f"in {seconds:.2f} s); a character-frequency model gets {baseline:.3f}"
        )
        lines = generate(model, seed)
        say("untrained samples:", *(f"    | {line}" for line in lines))
        say(
            "",
            "To train it, install a backend with automatic differentiation, then run the demo again:",
            f"    {INSTALL['jax']}    (in a checkout of rnnscan; or [torch,demo], [tensorflow,demo])",
        )
        metrics.update(steps=0, held_out_bits_per_char=bits, unigram_bits_per_char=baseline, samples=lines)
    else:
        say(f"training: {steps} steps of {BATCH} lines, Adam, learning rate {LR} with cosine decay")
        losses: list[float] = []
        step_times: list[float] = []
        bar = tqdm(range(steps), desc="training", unit="step", file=stream, dynamic_ncols=True)
        running = None
        for i in bar:
            batch = make_batch(corpus.train, rng.integers(0, len(corpus.train), BATCH))
            lr = LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * i / steps)))
            t0 = time.perf_counter()
            loss = model.train_step(batch, lr) / math.log(2)
            step_times.append(time.perf_counter() - t0)
            losses.append(loss)
            running = loss if running is None else 0.95 * running + 0.05 * loss
            bar.set_postfix_str(f"loss {running:.3f} bits/char", refresh=False)
        bar.close()
        per_step = float(np.median(step_times[1:])) if steps > 1 else step_times[0]
        bits = held_out_bits(model, corpus, eval_index)
        lines = generate(model, seed)
        png = out / "training_curve.png"
        plot(plt, losses, bits, baseline, backend, png)
        say(
            "",
            f"held-out: {bits:.3f} bits/char on {len(eval_index)} lines of {len(corpus.held_out_files)} unseen files "
            f"(a character-frequency model: {baseline:.3f}; uniform guessing: {math.log2(len(CHARS) + 1):.3f})",
            f"time per step: {per_step * 1000:.1f} ms (the first, compiling: {step_times[0]:.2f} s)",
            f"samples (temperature {TEMPERATURE}; indentation given, the rest generated):",
            *(f"    | {line}" for line in lines),
            f"training curve: {png.resolve()}",
        )
        metrics.update(
            steps=steps,
            losses_bits_per_char=losses,
            held_out_bits_per_char=bits,
            unigram_bits_per_char=baseline,
            seconds_per_step=per_step,
            first_step_seconds=step_times[0],
            samples=lines,
            plot=str(png.resolve()),
        )
    metrics["wall_seconds"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    say(f"metrics: {(out / 'metrics.json').resolve()}", f"total: {metrics['wall_seconds']:.1f} s")
    return metrics


def held_out_bits(model: Any, corpus: Corpus, index: np.ndarray) -> float:
    """Bits per character (end of line included) on held-out lines ``index``."""
    total = count = 0.0
    for start in range(0, len(index), EVAL_BATCH):
        chunk = index[start : start + EVAL_BATCH]
        if len(chunk) < EVAL_BATCH:  # one shape for every call: pad with repeats, masked out of the sums
            chunk = np.concatenate([chunk, np.full(EVAL_BATCH - len(chunk), chunk[0])])
            batch = make_batch(corpus.held_out, chunk)
            batch.mask[len(index) - start :] = False
        else:
            batch = make_batch(corpus.held_out, chunk)
        nats, n = model.evaluate(batch)
        total, count = total + nats, count + n
    return total / count / math.log(2)


def unigram_bits(corpus: Corpus, index: np.ndarray) -> float:
    """Bits per character of a context-free character-frequency model fitted on the training lines."""
    counts = np.ones(len(CHARS) + 2)  # add-one smoothing
    for text in corpus.train.text:
        counts[: len(CHARS)] += np.bincount(text, minlength=len(CHARS))
    counts[EOL] += len(corpus.train)
    logp = np.log2(counts / counts.sum())
    nll = sum(-logp[corpus.held_out.text[i]].sum() - logp[EOL] for i in index)
    return float(nll / sum(len(corpus.held_out.text[i]) + 1 for i in index))


def generate(model: Any, seed: int) -> list[str]:
    """A few lines sampled one character at a time, each call to ``rnnscan.rnn`` one step from the last state."""
    rng = np.random.default_rng(seed + 1)
    indent = np.asarray(SAMPLE_INDENTS, np.int32)
    tokens = np.full((len(indent), 1), BOS, np.int32)
    out = np.full((len(indent), MAX_LEN), EOL, np.int32)
    h = None
    for t in range(MAX_LEN):
        logits, h = model.advance(h, tokens, indent)
        logits = logits.astype(np.float64) / TEMPERATURE
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        choice = np.array([rng.choice(len(row), p=row) for row in p], np.int32)
        out[:, t] = choice
        tokens = np.where(choice == EOL, BOS, choice)[:, None].astype(np.int32)
    return [(" " * (4 * int(i)) + decode(row)).rstrip() for i, row in zip(indent, out)]


def plot(plt: Any, losses: list[float], held_out: float, baseline: float, backend: str, path: Path) -> dict[str, int]:
    """The training loss per step, smoothed; the held-out result as one point at the end (it is measured once,
    after training); the character-frequency baseline as a line. Returns each curve's label and point count."""
    x = np.arange(1, len(losses) + 1)
    width = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(x, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="training batch")
    ax.plot(x[width - 1 :], smooth, color="tab:blue", label=f"training, mean of {width} steps")
    ax.plot(
        len(losses),
        held_out,
        "D",
        color="tab:red",
        ms=7,
        zorder=3,
        label=f"held-out files, after training: {held_out:.2f}",
    )
    ax.annotate(
        "final evaluation",
        (len(losses), held_out),
        textcoords="offset points",
        xytext=(-8, -14),
        ha="right",
        fontsize=8,
        color="tab:red",
    )
    ax.axhline(baseline, color="gray", linestyle=":", label=f"character frequencies: {baseline:.2f}")
    ax.set(xlabel="training step", ylabel="bits per character", title=f"rnnscan demo on {backend}")
    ax.set_ylim(0, max(losses[: max(1, len(losses) // 20)] + [baseline]) * 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return {line.get_label(): len(line.get_xdata()) for line in ax.get_lines()}
