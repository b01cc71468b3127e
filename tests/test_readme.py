"""The README's examples run and give what they promise."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
EXAMPLES = [b for b in BLOCKS if "import" in b]


def test_first_screen_has_the_two_setup_commands():
    text = README.read_text()
    first_bash = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    commands = [line for line in first_bash.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].startswith("pip install torch==2.13.0") and "python -m rnnscan demo" in commands[0]
    assert commands[1].startswith("pip install torch==2.13.0") and "python -m pytest tests -q" in commands[1]
    assert text.index("```bash") < 1500


@pytest.mark.parametrize("code", EXAMPLES, ids=[b.split()[1].rstrip(",") for b in EXAMPLES])
def test_example_runs(code):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    outputs, h, last = namespace["outputs"], namespace["h"], namespace["last"]
    assert tuple(outputs.shape) == (4, 10, 16)
    assert tuple(h.shape) == tuple(last.shape) == (4, 16)


def test_ci_runs_the_readmes_test_command_verbatim():
    text = README.read_text()
    test_command = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()[-1]
    ci = (README.parent / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
