"""MkDocs hooks: the site builds (with --strict) before and after its feature pages land.

- Nav entries for the pages that follow their features (``OPTIONAL_PAGES``) are left out
  while their file does not exist; every other entry must exist.
- In a page, a block between ``<!-- if-module rnnscan.x -->`` and ``<!-- end-if-module -->``
  is kept only where the module's source exists under ``src/`` (read statically, as
  mkdocstrings reads the docstrings; nothing is imported).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

OPTIONAL_PAGES = {"keras.md", "long-sequences.md", "scaling.md"}
_IF_MODULE = re.compile(r"<!-- if-module ([\w.]+) -->\n(.*?)<!-- end-if-module -->\n?", re.S)


def prune_nav(nav: list, docs: Path) -> list:
    """``nav`` without the entries of ``OPTIONAL_PAGES`` that have no file under ``docs``."""
    kept = []
    for item in nav:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                kept.append({title: prune_nav(value, docs)})
            elif value in OPTIONAL_PAGES and not (docs / value).exists():
                continue
            else:
                kept.append(item)
        elif isinstance(item, str) and item in OPTIONAL_PAGES and not (docs / item).exists():
            continue
        else:
            kept.append(item)
    return kept


def module_exists(root: Path, module: str) -> bool:
    """Whether ``module`` (``rnnscan.keras``) has a source file under ``root / "src"``."""
    base = root / "src" / Path(*module.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def on_config(config: Any) -> Any:
    config["nav"] = prune_nav(config["nav"], Path(config["docs_dir"]))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent
    return _IF_MODULE.sub(lambda m: m.group(2) if module_exists(root, m.group(1)) else "", markdown)
