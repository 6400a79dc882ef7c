"""Shared fixtures: ``xp`` runs a test body on every backend (numpy; cupy on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from minidl.backend import is_gpu_available

BACKENDS = ["numpy"] + (["cupy"] if is_gpu_available() else [])


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module under test: numpy always, cupy when CuPy and a GPU are present."""
    if request.param == "cupy":
        import cupy

        return cupy
    return np


@pytest.fixture
def device(xp):
    """The minidl device name matching ``xp``."""
    return "cpu" if xp is np else "cuda"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
