"""Shared fixtures: ``xp`` runs a test body on every backend.

``numpy`` always; ``cupy-sim`` always (the simulated CuPy, plain NumPy underneath, so CI runs the
GPU code path on every commit); real ``cupy`` where CuPy finds a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from minidl import backend

GPU_OK, GPU_WHY = backend.gpu_status()
BACKENDS = ["numpy", "cupy-sim"] + ([pytest.param("cupy", marks=pytest.mark.gpu)] if GPU_OK else [])
_used: dict[str, set[str]] = {"numpy": set(), "cupy-sim": set(), "cupy": set()}  # test ids
_passed: set[str] = set()


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _passed.add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    """One line saying which backends ran, so a GPU that silently went missing shows."""
    counts = {name: len(ids & _passed) for name, ids in _used.items()}
    ran = ", ".join(f"{name} {n} tests" for name, n in counts.items() if n)
    gpu = "real cupy ran" if counts["cupy"] else f"real cupy NOT run ({GPU_WHY or 'not selected'})"
    terminalreporter.write_line(f"minidl backends: {ran or 'none'}; {gpu}")


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test; with ``cupy-sim``, device "cuda" is the simulation."""
    _used[request.param].add(request.node.nodeid)
    if request.param == "cupy":
        import cupy

        yield cupy
    elif request.param == "cupy-sim":
        with backend.simulate_cuda() as sim:
            yield sim
    else:
        yield np


@pytest.fixture
def device(xp):
    """The minidl device name matching ``xp``."""
    return "cpu" if xp is np else "cuda"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
