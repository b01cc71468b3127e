"""Packaging checks, run by .ci/run: build the sdist and the wheel and check what they carry.

- One TensorFlow distribution is installed (tf-keras requires ``tensorflow``; the extras
  ask for nothing else), and no install instruction names ``tensorflow-cpu``.
- The wheel: the package, ``py.typed`` and LICENSE; metadata with the package's version,
  the Apache-2.0 license expression; no tests.
- The sdist is complete: LICENSE, CHANGELOG.md, and every tracked file of src/, tests/,
  docs/ and .ci/. Unpacked, with the wheel installed (and not the checkout),
  its tests collect, and exactly the tests the checkout collects.

Usage: ``python .ci/check_packaging.py`` from a checkout, with ``.[test]`` installed.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TENSORFLOWS = {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tensorflow-gpu", "tf-nightly"}
# Where a user reads how to install (CHANGELOG.md records the switch, so it is not listed).
INSTALL_TEXTS = ["pyproject.toml", "README.md", ".ci/run", "docs"]
COMPLETE_SDIST = ["src", "tests", "docs", ".ci"]


def fail(message: str) -> None:
    sys.exit(f"check_packaging: FAILED: {message}")


def version() -> str:
    text = (ROOT / "src" / "rnnscan" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def tracked(*paths: str) -> list[str]:
    """Files git tracks under ``paths`` that exist (outside a git checkout: every file under them)."""
    if not (ROOT / ".git").exists():
        found = (p for path in paths for p in ([ROOT / path] if (ROOT / path).is_file() else (ROOT / path).rglob("*")))
        return sorted(str(p.relative_to(ROOT)) for p in found if p.is_file() and "__pycache__" not in p.parts)
    out = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=ROOT, capture_output=True, check=True).stdout
    return sorted(p for p in out.decode().split("\0") if p and (ROOT / p).is_file())


def check_one_tensorflow() -> None:
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in importlib.metadata.distributions()}
    found = installed & TENSORFLOWS
    if found != {"tensorflow"}:
        fail(f"expected exactly one TensorFlow distribution, tensorflow; installed: {sorted(found)}")
    for path in tracked(*INSTALL_TEXTS):
        if "tensorflow-cpu" in (ROOT / path).read_text(errors="replace"):
            fail(f"{path} names tensorflow-cpu; use the one TensorFlow distribution, tensorflow")
    print("one TensorFlow: tensorflow (and no install text names tensorflow-cpu)")


def build(out: Path) -> tuple[Path, Path]:
    # The default build makes the sdist, then the wheel from the unpacked sdist.
    command = [sys.executable, "-m", "build", "--outdir", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        fail(f"python -m build exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    v = version()
    sdist, wheel = out / f"rnnscan-{v}.tar.gz", out / f"rnnscan-{v}-py3-none-any.whl"
    for archive in (sdist, wheel):
        if not archive.exists():
            fail(f"{archive.name} was not built; got {sorted(p.name for p in out.iterdir())}")
    return sdist, wheel


def check_wheel(wheel: Path) -> None:
    v = version()
    info = f"rnnscan-{v}.dist-info"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        license_text = z.read(f"{info}/licenses/LICENSE") if f"{info}/licenses/LICENSE" in names else None
        metadata = email.parser.Parser().parsestr(z.read(f"{info}/METADATA").decode())
    if license_text != (ROOT / "LICENSE").read_bytes():
        fail(f"the wheel does not carry LICENSE as {info}/licenses/LICENSE")
    package = {"rnnscan/" + p.removeprefix("src/rnnscan/") for p in tracked("src/rnnscan")}
    missing = package - names
    if missing:
        fail(f"the wheel lacks {sorted(missing)}")
    if "rnnscan/py.typed" not in names:
        fail("the wheel lacks rnnscan/py.typed")
    strays = sorted(n for n in names if not (n.startswith("rnnscan/") or n.startswith(f"{info}/")))
    if strays:
        fail(f"the wheel carries files outside the package: {strays}")
    if metadata["Version"] != v or metadata["License-Expression"] != "Apache-2.0":
        fail(f"wheel metadata: Version {metadata['Version']}, License-Expression {metadata['License-Expression']}")
    requires = metadata.get_all("Requires-Dist") or []
    if any("tensorflow-cpu" in r for r in requires):
        fail(f"the wheel requires tensorflow-cpu: {requires}")
    if not any(re.match(r"tensorflow\b[^-]", r) and 'extra == "tensorflow"' in r for r in requires):
        fail(f"the tensorflow extra does not require tensorflow: {requires}")
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files, LICENSE and py.typed")


def check_sdist(sdist: Path) -> None:
    prefix = sdist.name.removesuffix(".tar.gz") + "/"
    with tarfile.open(sdist) as t:
        members = {m.name.removeprefix(prefix): m for m in t.getmembers() if m.isfile()}
        license_text = t.extractfile(members["LICENSE"]).read() if "LICENSE" in members else None
    if license_text != (ROOT / "LICENSE").read_bytes():
        fail("the sdist does not carry LICENSE")
    wanted = {"CHANGELOG.md", "README.md", "pyproject.toml", "mkdocs.yml", "PKG-INFO", *tracked(*COMPLETE_SDIST)}
    missing = sorted(wanted - members.keys())
    if missing:
        fail(f"the sdist lacks {missing}")
    compiled = sorted(n for n in members if "__pycache__" in n or n.endswith(".pyc"))
    if compiled:
        fail(f"the sdist carries compiled files: {compiled}")
    print(f"sdist {sdist.name}: {sdist.stat().st_size / 1024:.0f} KiB, {len(members)} files, complete")


def collected(cwd: Path, env: dict[str, str]) -> set[str]:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        fail(f"pytest --collect-only in {cwd} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return {line for line in done.stdout.splitlines() if "::" in line}


def check_sdist_tests(sdist: Path, wheel: Path, work: Path) -> None:
    with tarfile.open(sdist) as t:
        t.extractall(work, filter="data")
    unpacked = work / sdist.name.removesuffix(".tar.gz")
    site = work / "site-packages"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "2"}
    where = subprocess.run(
        [sys.executable, "-c", "import rnnscan; print(rnnscan.__file__)"],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).is_relative_to(site):
        fail(f"the sdist's tests would import rnnscan from {where}, not from the installed wheel")
    from_sdist = collected(unpacked, env)
    from_checkout = collected(ROOT, {**env, "PYTHONPATH": str(ROOT / "src")})
    if from_sdist != from_checkout:
        only_sdist, only_checkout = sorted(from_sdist - from_checkout), sorted(from_checkout - from_sdist)
        fail(
            f"the sdist collects other tests than the checkout: only in the sdist {only_sdist[:10]}, "
            f"only in the checkout {only_checkout[:10]}"
        )
    print(f"the sdist's tests collect against the installed wheel: {len(from_sdist)} tests, as in the checkout")


def main() -> None:
    check_one_tensorflow()
    with tempfile.TemporaryDirectory(prefix="rnnscan-packaging-") as tmp:
        tmp = Path(tmp)
        sdist, wheel = build(tmp / "dist")
        check_wheel(wheel)
        check_sdist(sdist)
        check_sdist_tests(sdist, wheel, tmp / "unpacked")
    print("check_packaging: OK")


if __name__ == "__main__":
    main()
