"""Shared fixtures: ``xp`` runs a test body on every backend.

``numpy`` always; ``cupy-sim`` always (the simulated CuPy, plain NumPy underneath, so CI runs the
GPU code path on every commit); real ``cupy`` where CuPy finds a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from minidl import backend

BACKENDS = ["numpy", "cupy-sim"] + (
    [pytest.param("cupy", marks=pytest.mark.gpu)] if backend.is_gpu_available() else []
)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test; with ``cupy-sim``, device "cuda" is the simulation."""
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
