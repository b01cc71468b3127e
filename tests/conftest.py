"""The `backend` fixture: every rnnscan backend whose framework is installed."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from frameworks import BACKENDS, Framework, framework, installed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _params(names: tuple[str, ...]) -> list:
    return [
        pytest.param(
            name,
            marks=[] if installed(name) else pytest.mark.skip(reason=f"{name} is not installed"),
            id=name,
        )
        for name in names
    ]


@pytest.fixture(params=_params(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Framework:
    """The framework under test, with converters to and from NumPy."""
    return framework(request.param)


@pytest.fixture(params=_params(tuple(n for n in BACKENDS if n != "numpy")))
def diff_backend(request: pytest.FixtureRequest) -> Framework:
    """The differentiable frameworks under test."""
    return framework(request.param)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """Fresh random data for every test, reproducible from the test's id."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
