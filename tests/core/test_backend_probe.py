"""Which GPU counts as usable: one that ran a kernel of each library a step needs.

CuPy's wheel imports and counts devices without the CUDA libraries it loads at the first kernel,
so a fake CuPy here counts one device and fails where the real one would: these tests need no GPU.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from helpers.paths import ROOT

import minidl as md
from minidl import backend
from minidl.testing import cupy_sim


def _fake_cupy(fails: str = "", devices: int = 1, driver_error: str = ""):
    """cupy_sim's arrays behind a CuPy that may fail at one library ("nvrtc", "cublas",
    "curand"), see no device, or meet a driver error."""

    def get_device_count():
        if driver_error:
            raise RuntimeError(driver_error)
        return devices

    def failing(library, call):
        def run(*args, **kwargs):
            if fails == library:
                raise RuntimeError(
                    f"CuPy failed to load lib{library}.so: cannot open shared object"
                )
            return call(*args, **kwargs)

        return run

    def arange(*args, **kwargs):
        return failing("nvrtc", cupy_sim.arange)(*args, **kwargs)

    return SimpleNamespace(
        __version__="14.2.0",
        float32=cupy_sim.float32,
        ndarray=cupy_sim.ndarray,
        arange=arange,
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=get_device_count)),
        random=SimpleNamespace(random=failing("curand", cupy_sim.random.random)),
    )


@pytest.fixture
def fake(monkeypatch):
    """Install a fake CuPy (a function of its failure) with a fresh probe; undone afterwards."""
    monkeypatch.delenv(backend.SIMULATE_ENV, raising=False)

    def install(**kwargs):
        cupy = _fake_cupy(**kwargs)
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        monkeypatch.setattr(backend, "_probe_result", None)
        return cupy

    yield install
    backend._probe_result = None  # the real machine's answer is probed again when next asked


@pytest.mark.parametrize("library, name", [("nvrtc", "NVRTC"), ("curand", "cuRAND")])
def test_a_gpu_whose_libraries_fail_is_not_usable_and_the_error_names_the_library(
    fake, library, name
):
    fake(fails=library)
    assert not backend.is_gpu_available()
    with pytest.raises(RuntimeError) as error:
        md.tensor([1.0]).to("cuda")
    message = str(error.value)
    assert f"{name} failed" in message and "sees 1 GPU" in message
    assert 'pip install -e ".[cuda13]"' in message and "MINIDL_SIMULATE_CUDA=1" in message


def test_a_driver_error_and_no_device_say_so(fake):
    fake(driver_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    ok, why = backend.gpu_status()
    assert not ok and "no CUDA GPU answers" in why and "InsufficientDriver" in why
    fake(devices=0)
    ok, why = backend.gpu_status()
    assert not ok and "device count 0" in why


def test_a_gpu_that_runs_the_first_kernels_is_usable(fake):
    cupy = fake()
    assert backend.gpu_status() == (True, "")
    assert backend.import_cupy() is cupy


def test_the_environment_variable_selects_the_simulation_even_beside_a_working_gpu(
    fake, monkeypatch
):
    fake()
    monkeypatch.setenv(backend.SIMULATE_ENV, "1")
    assert backend.is_gpu_available()
    assert backend.import_cupy() is cupy_sim


def test_missing_cupy_says_how_to_install_it(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    ok, why = backend.gpu_status()
    assert not ok and "CuPy is not installed" in why and ".[cuda13]" in why


def test_the_test_session_says_which_backends_ran():
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["tests/ops/test_ops_forward.py", "-k", "relu or ReLU"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    (line,) = [s for s in result.stdout.splitlines() if s.startswith("minidl backends:")]
    assert "numpy" in line and "cupy-sim" in line
    assert "real cupy ran" in line if backend.is_gpu_available() else "real cupy NOT run (" in line
