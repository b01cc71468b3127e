"""The documentation site: every page's examples run and print what the page shows, and
``mkdocs build --strict`` builds it (warnings are errors).

In a page, every block fenced ```python runs, in order, in one namespace per page (a page
reads top to bottom). A ```text block right after a ```python block is what that block
prints, and must match it exactly. A block that cannot run in one process (a multi-host
launch, say) is fenced ```py instead, and its page says why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCRIPTS = DOCS / "_scripts"
PAGES = sorted(p for p in DOCS.rglob("*.md") if SCRIPTS not in p.parents)
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
# A missing one of these is a framework not installed here, the one reason a test may skip.
FRAMEWORKS = {"jax", "jaxlib", "torch", "tensorflow", "tf_keras", "keras"}


def examples(text: str) -> list[tuple[int, str, str | None]]:
    """Each ```python block of a page: (first line number, code, the ```text block after it or None)."""
    blocks = list(FENCE.finditer(text))
    found = []
    for i, block in enumerate(blocks):
        if block.group(1) != "python":
            continue
        expected = None
        after = blocks[i + 1] if i + 1 < len(blocks) else None
        if after is not None and after.group(1) == "text" and not text[block.end() : after.start()].strip():
            expected = after.group(2)
        line = text.count("\n", 0, block.start(2)) + 1
        found.append((line, block.group(2), expected))
    return found


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


RUNNABLE = [p for p in PAGES if examples(p.read_text())]


def test_examples_are_found() -> None:
    text = "a\n```python\nprint(1)\n```\n\n```text\n1\n```\n```bash\nls\n```\n```python\nx = 2\n```\n```py\nno\n```\n"
    assert examples(text) == [(3, "print(1)\n", "1\n"), (13, "x = 2\n", None)]
    assert {p.name for p in RUNNABLE} >= {"quickstart.md", "semantics.md", "from-keras.md"}


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(DOCS)) for p in RUNNABLE])
def test_page_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the page's namespace is a module's, importable by name (torch.export looks classes up in theirs)
    module = ModuleType("__docs__")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for line, code, expected in examples(page.read_text()):
        where = f"{page.relative_to(ROOT)}, the block at line {line}"
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] in FRAMEWORKS:
                pytest.skip(f"{error.name} is not installed ({where})")
            raise
        if expected is not None:
            assert _lines(out.getvalue()) == _lines(expected), f"{where} printed:\n{out.getvalue()}"


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def _config() -> dict:
    # mkdocs.yml holds no custom tags; BaseLoader reads it as plain strings, lists and mappings.
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)


def test_every_page_is_in_the_nav() -> None:
    nav = set(_nav_pages(_config()["nav"]))
    top = {p.name for p in DOCS.glob("*.md")}
    assert top <= nav, f"pages missing from mkdocs.yml's nav: {sorted(top - nav)}"


def _script(name: str) -> ModuleType:
    """A module of docs/_scripts, loaded from its file."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2.0, not a build warning
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command[1:])} failed:\n{done.stdout}\n{done.stderr}"
    hooks = _script("hooks")
    for page in _nav_pages(hooks.prune_nav(_config()["nav"], DOCS)):
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).exists(), f"{page} was not built"
    api = (site / "api" / "index.html").read_text()
    assert 'id="rnnscan.rnn"' in api, "the API reference lacks rnnscan.rnn"
    assert ('id="rnnscan.keras"' in api) == hooks.module_exists(ROOT, "rnnscan.keras")
    assert "masked-batch.png" in (site / "semantics" / "index.html").read_text()
    assert (site / "assets" / "masked-batch.png").exists()
    assert not (site / "_scripts").exists()


def test_masked_batch_picture(tmp_path: Path) -> None:
    """The semantics page's picture: its grids, from rnnscan.rnn, are the hand-derived ones."""
    masked_batch = _script("masked_batch")
    grids = masked_batch.run()
    # mask rows: [1 1 1 1 0 0], [0 1 1 0 1 0], [1 1 1 1 1 1]; step t outputs t + 1 and counts.
    np.testing.assert_array_equal(grids["outputs"], [[1, 2, 3, 4, 4, 4], [0, 2, 3, 3, 5, 5], [1, 2, 3, 4, 5, 6]])
    np.testing.assert_array_equal(grids["zeroed"], [[1, 2, 3, 4, 0, 0], [0, 2, 3, 0, 5, 0], [1, 2, 3, 4, 5, 6]])
    np.testing.assert_array_equal(grids["states"], [[1, 2, 3, 4, 4, 4], [0, 1, 2, 2, 3, 3], [1, 2, 3, 4, 5, 6]])
    np.testing.assert_array_equal(grids["last_output"], [4, 5, 6])
    np.testing.assert_array_equal(grids["new_states"], [4, 3, 6])
    drawn = masked_batch.draw(tmp_path / "masked-batch.png")
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
