"""The README's examples run, print what their last line says they print, and compute
Keras's loop: each one's results are those of the loop written out by hand with its own step."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
from typing import Any

import numpy as np
import pytest

from frameworks import framework

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PRINTS = re.compile(r"print\(.+\)  # (?P<printed>.+)")

# The example of each backend (the block starting `import <framework>`), and what it passes to
# rnn() besides (step, x, [zeros (4, 16)]), by the names it defines.
CALLS: dict[str, dict[str, Any]] = {
    "jax": {"mask": "mask"},
    "torch": {"go_backwards": True},
    "tensorflow": {"constants": [np.ones(16, np.float32)]},
    "numpy": {"mask": "mask", "zero_output_for_mask": True},
}
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
EXAMPLES = {name: b for b in BLOCKS for name in CALLS if re.match(rf"import {name}\b", b)}


def hand_loop(
    fw: Any, step: Any, x: Any, mask: Any = None, constants: Any = (), go_backwards: bool = False, **flags: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Keras's loop over `step` (one state h (batch, 16) from zeros, whose output is h), written out:
    outputs (batch, time, 16) in processing order and the last state, as NumPy."""
    xs, keep = fw.to_numpy(x), np.ones(x.shape[:2], bool) if mask is None else fw.to_numpy(mask)
    h, previous, outputs = np.zeros((xs.shape[0], 16), np.float32), 0.0, []
    for t in reversed(range(xs.shape[1])) if go_backwards else range(xs.shape[1]):
        out, (new,) = step(fw.asarray(xs[:, t]), [fw.asarray(h), *(fw.asarray(c) for c in constants)])
        k = keep[:, t, None]
        h = np.where(k, fw.to_numpy(new), h)
        previous = np.where(k, fw.to_numpy(out), 0.0 if flags.get("zero_output_for_mask") else previous)
        outputs.append(previous)
    return np.stack(outputs, 1), h


@pytest.mark.parametrize("name", list(CALLS))
def test_example_prints_what_it_says_and_computes_the_loop(name: str) -> None:
    code = EXAMPLES[name]
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), namespace)
    assert printed.getvalue() == PRINTS.fullmatch(code.strip().splitlines()[-1])["printed"] + "\n"

    fw = framework(name)
    outputs, h, last = (fw.to_numpy(namespace[n]) for n in ("outputs", "h", "last"))
    assert outputs.shape == (4, 10, 16) and h.shape == last.shape == (4, 16)
    np.testing.assert_array_equal(last, outputs[:, -1])
    call = {key: namespace[v] if isinstance(v, str) else v for key, v in CALLS[name].items()}
    expected_outputs, expected_h = hand_loop(fw, namespace["step"], namespace["x"], **call)
    np.testing.assert_allclose(outputs, expected_outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, expected_h, rtol=1e-5, atol=1e-6)


def test_the_install_commands_name_extras_the_package_defines() -> None:
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = ", section, flags=re.M))
    named = {e for group in re.findall(r'pip install -e "\.\[([\w,]+)\]"', README) for e in group.split(",")}
    assert named and named <= extras, named - extras


def test_the_readme_is_a_product_page() -> None:
    """At most 200 lines; exactly two set-up commands, in the first screen; every link into the tree resolves."""
    lines = README.splitlines()
    assert len(lines) <= 200, len(lines)
    first_screen = "\n".join(lines[:25])
    commands = [line for line in first_screen.splitlines() if line.startswith("pip install")]
    assert len(commands) == 2 and all(c in first_screen for c in ("python -m rnnscan demo", "17 minutes"))
    links = {link.split("#")[0] for link in re.findall(r"\]\(((?:docs|src|tests)/[^)\s]+)\)", README)}
    assert links and not {link for link in links if not (ROOT / link).exists()}


def test_the_test_command_is_ci_s() -> None:
    """The README's test command is the one .ci/run runs, verbatim."""
    command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest tests -q'
    assert command in README.splitlines()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_signature_block_is_rnn_s_signature() -> None:
    """The README's signature is valid Python and names rnnscan.rnn's parameters, kinds and defaults."""
    import ast
    import inspect

    import rnnscan

    (block,) = [b for b in BLOCKS if b.startswith("def rnn(")]
    (tree,) = ast.parse(block).body
    assert isinstance(tree, ast.FunctionDef)
    params = inspect.signature(rnnscan.rnn).parameters.values()
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = [p for p in params if p.kind is p.KEYWORD_ONLY]
    assert [a.arg for a in tree.args.args] == [p.name for p in positional]
    assert [a.arg for a in tree.args.kwonlyargs] == [p.name for p in keyword]
    defaults = [ast.literal_eval(d) for d in (*tree.args.defaults, *tree.args.kw_defaults)]
    assert defaults == [p.default for p in (*positional, *keyword) if p.default is not p.empty]
