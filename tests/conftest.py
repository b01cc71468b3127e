"""The `backend` fixture: every rnnscan backend whose framework is installed."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from frameworks import BACKENDS, Framework, framework, installed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Hypothesis: a fixed seed and a bounded example count by default (CI);
# `pytest --hypothesis-profile=long` runs 20x more examples.
HYPOTHESIS_EXAMPLES = 40
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=20 * HYPOTHESIS_EXAMPLES)
settings.load_profile("ci")


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With RNNSCAN_NO_SKIPS=1 (CI, where every framework is installed) a skipped test fails the run."""
    if os.environ.get("RNNSCAN_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        print(f"\nRNNSCAN_NO_SKIPS=1: {skipped} test(s) skipped; every backend must run here.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
