"""Draw docs/assets/masked-batch.png: which outputs and states a masked batch keeps.

Every number in the picture comes from running ``rnnscan.rnn`` (NumPy) on a batch of
three sequences of six steps. The step function outputs the number of the step it
processed plus one (1 to 6, so that 0 reads as zeros; the picture labels
it y0 to y5) and counts, in its state, the steps it has processed:

- outputs, ``zero_output_for_mask=False`` and ``True``: one call each;
- the state after step ``t``: ``new_states`` of a call on the first ``t`` steps.

Run ``python docs/_scripts/masked_batch.py`` (needs matplotlib) to redraw it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import rnnscan

OUT = Path(__file__).resolve().parents[1] / "assets" / "masked-batch.png"
MASK = np.array(
    [
        [1, 1, 1, 1, 0, 0],  # padded at the end
        [0, 1, 1, 0, 1, 0],  # first step masked, and holes
        [1, 1, 1, 1, 1, 1],  # every step kept
    ],
    dtype=bool,
)
BATCH, TIME = MASK.shape


def step(x_t: np.ndarray, states: tuple) -> tuple[np.ndarray, list]:
    """Output the step's number (carried by the input); the state counts processed steps."""
    count = states[0] + 1
    return x_t[:, :1], [count]


def inputs() -> np.ndarray:
    """(batch, time, 1): the step numbers 1..time."""
    return np.broadcast_to(np.arange(1, TIME + 1, dtype=np.float32)[None, :, None], (BATCH, TIME, 1)).copy()


def run() -> dict[str, np.ndarray]:
    """Every grid the picture shows, each (batch, time), from rnnscan.rnn."""
    x, h0 = inputs(), [np.zeros((BATCH, 1), np.float32)]
    _, kept, _ = rnnscan.rnn(step, x, h0, mask=MASK)
    _, zeroed, _ = rnnscan.rnn(step, x, h0, mask=MASK, zero_output_for_mask=True)
    states = np.stack(
        [rnnscan.rnn(step, x[:, : t + 1], h0, mask=MASK[:, : t + 1])[2][0][:, 0] for t in range(TIME)], axis=1
    )
    last, _, (h,) = rnnscan.rnn(step, x, h0, mask=MASK)
    return {
        "outputs": kept[..., 0],
        "zeroed": zeroed[..., 0],
        "states": states,
        "last_output": last[:, 0],
        "new_states": h[:, 0],
    }


def _output_label(value: float) -> str:
    """``y3``: the output computed at step t=3 (the step function outputs t + 1); ``0``: zeros."""
    return f"y{value - 1:.0f}" if value else "0"


def draw(path: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    grids = run()
    kept_c, masked_c, zero_c = "#4c9be8", "#d9d9d9", "#ffffff"
    panels = [
        ("mask", None),
        ("outputs", grids["outputs"]),
        ("outputs, zero_output_for_mask=True", grids["zeroed"]),
        ("state after the step", grids["states"]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.2, 7.4), layout="constrained")
    for ax, (title, grid) in zip(axes, panels):
        for b in range(BATCH):
            for t in range(TIME):
                kept = MASK[b, t]
                if grid is None:
                    text, colour = ("keep" if kept else "masked"), (kept_c if kept else masked_c)
                elif title.startswith("state"):
                    text = f"h={grid[b, t]:.0f}"
                    colour = kept_c if kept else masked_c
                else:
                    value = grid[b, t]
                    text = _output_label(value)
                    colour = kept_c if kept else (zero_c if value == 0 else masked_c)
                ax.add_patch(plt.Rectangle((t, b), 1, 1, facecolor=colour, edgecolor="#555555"))
                style = "normal" if (kept or grid is None) else "italic"
                ax.text(t + 0.5, b + 0.5, text, ha="center", va="center", fontsize=10, fontstyle=style)
        extra = {"outputs": "last_output", "state after the step": "new_states"}.get(title)
        if extra:
            for b in range(BATCH):
                value = grids[extra][b]
                label = _output_label(value) if extra == "last_output" else f"h={value:.0f}"
                ax.add_patch(plt.Rectangle((TIME + 0.3, b), 1.4, 1, facecolor="#fff3c4", edgecolor="#555555"))
                ax.text(TIME + 1.0, b + 0.5, label, ha="center", va="center", fontsize=10, fontweight="bold")
            ax.text(TIME + 1.0, -0.15, extra, ha="center", va="bottom", fontsize=9)
        ax.set_xlim(0, TIME + 1.9)
        ax.set_ylim(BATCH, 0)
        ax.set_xticks([t + 0.5 for t in range(TIME)], [f"t={t}" for t in range(TIME)])
        ax.set_yticks([b + 0.5 for b in range(BATCH)], [f"sample {b}" for b in range(BATCH)])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(title, loc="left", fontsize=11)
    fig.legend(
        handles=[
            Patch(facecolor=kept_c, edgecolor="#555555", label="kept step: computed by the step function"),
            Patch(facecolor=masked_c, edgecolor="#555555", label="masked step: previous value repeated"),
            Patch(facecolor=zero_c, edgecolor="#555555", label="masked step: zeros"),
        ],
        loc="outside lower center",
        ncol=2,
        fontsize=9,
        frameon=False,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(f"wrote {draw(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)}")
