"""The demo's data: lines of the Python standard library's own source, as padded, masked batches.

Every Python installation carries its standard library as ``.py`` files, so the
data is real and offline on any machine. Each source line is one sequence: its
indentation depth is the sequence's context (fed to the cell through
``constants``), its text after the indentation the characters to model. Lines
have their natural, variable lengths; a batch pads them to ``MAX_LEN + 1`` steps
and a mask marks the real ones.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the characters modelled: printable ASCII; token ids ``0..94``
CHARS = "".join(chr(c) for c in range(32, 127))
BOS = len(CHARS)  #: input token at the first step of every line
EOL = len(CHARS) + 1  #: target after the last character of a line
VOCAB = len(CHARS) + 2
MAX_LEN = 79  #: longer lines (rare: PEP 8 asks for at most 79 characters) are left out
INDENT_LEVELS = 8  #: indentation depth in steps of 4 spaces, 7 meaning 28 or more
HELD_OUT_FRACTION = 0.1

_CODE = np.full(128, -1, dtype=np.int32)
_CODE[32:127] = np.arange(len(CHARS), dtype=np.int32)


@dataclass(frozen=True)
class Lines:
    """Encoded lines: ``text[i]`` as token ids, at indentation level ``indent[i]``."""

    text: list[np.ndarray]
    indent: np.ndarray

    def __len__(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class Batch:
    """One padded batch; ``T = MAX_LEN + 1`` steps (the characters and the end of line)."""

    inputs: np.ndarray  #: (B, T) int32: BOS, then the line's characters, then padding
    targets: np.ndarray  #: (B, T) int32: the characters, then EOL, then padding
    mask: np.ndarray  #: (B, T) bool: True on the ``len(line) + 1`` real steps
    indent: np.ndarray  #: (B,) int32: indentation level, the context passed through ``constants``


@dataclass(frozen=True)
class Corpus:
    train: Lines
    held_out: Lines
    train_files: list[str]
    held_out_files: list[str]
    stdlib: str


def stdlib_files(stdlib: str | None = None) -> list[Path]:
    """The standard library's top-level ``.py`` files, sorted by name."""
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    return sorted(root.glob("*.py"))


def encode_file(path: Path) -> Lines:
    """A file's non-blank printable-ASCII lines of at most ``MAX_LEN`` characters, encoded."""
    text, indent = [], []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.rstrip().expandtabs(4)
        body = line.lstrip(" ")
        if not body or len(line) > MAX_LEN or not line.isascii() or not line.isprintable():
            continue
        text.append(_CODE[np.frombuffer(body.encode("ascii"), dtype=np.uint8)])
        indent.append(min((len(line) - len(body)) // 4, INDENT_LEVELS - 1))
    return Lines(text, np.asarray(indent, dtype=np.int32))


def _concat(parts: list[Lines]) -> Lines:
    return Lines(
        [t for p in parts for t in p.text], np.concatenate([p.indent for p in parts] or [np.zeros(0, np.int32)])
    )


def load_corpus(seed: int, stdlib: str | None = None) -> Corpus:
    """Split the standard library's files into training and held-out files, chosen by ``seed``."""
    files = stdlib_files(stdlib)
    if len(files) < 10:
        raise RuntimeError(f"found only {len(files)} .py files in the standard library at {stdlib!r}")
    order = np.random.default_rng(seed).permutation(len(files))
    n_held = max(1, round(HELD_OUT_FRACTION * len(files)))
    held, train = sorted(order[:n_held]), sorted(order[n_held:])
    return Corpus(
        train=_concat([encode_file(files[i]) for i in train]),
        held_out=_concat([encode_file(files[i]) for i in held]),
        train_files=[files[i].name for i in train],
        held_out_files=[files[i].name for i in held],
        stdlib=str(files[0].parent),
    )


def make_batch(lines: Lines, index: np.ndarray) -> Batch:
    """Lines ``index`` padded to ``MAX_LEN + 1`` steps, with their mask."""
    steps = MAX_LEN + 1
    inputs = np.zeros((len(index), steps), np.int32)
    targets = np.zeros((len(index), steps), np.int32)
    mask = np.zeros((len(index), steps), bool)
    for row, i in enumerate(index):
        text = lines.text[i]
        n = len(text)
        inputs[row, 0] = BOS
        inputs[row, 1 : n + 1] = text
        targets[row, :n] = text
        targets[row, n] = EOL
        mask[row, : n + 1] = True
    return Batch(inputs, targets, mask, lines.indent[index].astype(np.int32))


def decode(tokens: np.ndarray) -> str:
    """Token ids back to text, up to the first EOL."""
    out = []
    for t in tokens:
        if t >= len(CHARS):
            break
        out.append(CHARS[t])
    return "".join(out)
