"""Whole programs on the simulated GPU: the CuPy code path of minidl, checked on every commit.

Op tests run on ``cupy-sim`` through the ``xp`` fixture; these run what users run: a GoogLeNet
training step, the data loader, the command line and the GPU lesson, on device "cuda" backed by
``minidl.testing.cupy_sim`` (see README, "The GPU path without a GPU").
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers.cifar import write_cifar, write_tiny_cifar
from helpers.paths import ROOT

import minidl as md
from minidl import backend, nn, optim
from minidl.data import DataLoader
from minidl.testing import cupy_sim
from minidl.train import train_step


@pytest.fixture
def sim():
    with backend.simulate_cuda() as xp:
        xp.stats.reset()
        yield xp


@pytest.fixture(
    params=["cupy-sim"]
    + ([pytest.param("cupy", marks=pytest.mark.gpu)] if backend.is_gpu_available() else [])
)
def gpu(request):
    """Device "cuda" as the simulation and, where a GPU is present, as real CuPy: the model-level
    checks run on both."""
    if request.param == "cupy":
        yield backend.import_cupy()
    else:
        with backend.simulate_cuda() as xp:
            yield xp


def _googlenet(dtype):
    """The CIFAR GoogLeNet at width 0.25 with its two auxiliary heads, dropout off.

    Dropout draws from each device's own random stream (CuPy's differs from NumPy's), so the
    masks could never agree; everything else must."""
    from googlenet import googlenet_cifar

    nn.init.manual_seed(0)
    model = googlenet_cifar(width=0.25, aux_logits=True).to(dtype=dtype)
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model.train()


def _batch(dtype, n=8):
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 3, 32, 32)).astype(dtype), rng.integers(0, 10, n)


def _one_step(model, x, y, device):
    from googlenet_cli import make_loss

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xt, yt = md.tensor(x, device=device), md.tensor(y, device=device)
    loss, correct = train_step(model, make_loss(0.3, 0.1), opt, xt, yt)
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    return loss, correct, grads, weights


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / (np.linalg.norm(want) + 1e-30))


def _flat(grads: dict) -> np.ndarray:
    return np.concatenate([grads[k].ravel().astype(np.float64) for k in sorted(grads)])


def test_googlenet_training_step_matches_numpy_in_float64(gpu):
    """Loss, every gradient, and the weights and BN statistics after the SGD step."""
    model = _googlenet(np.float64)
    on_gpu = copy.deepcopy(model).to("cuda")
    assert isinstance(next(on_gpu.parameters()).data, gpu.ndarray)
    x, y = _batch(np.float64)
    cpu_loss, cpu_correct, cpu_grads, cpu_weights = _one_step(model, x, y, "cpu")
    gpu_loss, gpu_correct, gpu_grads, gpu_weights = _one_step(on_gpu, x, y, "cuda")
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-10)
    assert gpu_correct == cpu_correct
    assert len(cpu_grads) > 100
    for k in cpu_grads:
        assert _relative_error(gpu_grads[k], cpu_grads[k]) <= 1e-10, k
    for k in cpu_weights:  # after the SGD step with momentum and weight decay; BN statistics
        np.testing.assert_allclose(gpu_weights[k], cpu_weights[k], rtol=1e-10, atol=1e-12)


def test_googlenet_training_step_in_float32_is_as_accurate_as_numpys(gpu):
    """float32 on both devices, measured against the float64 step from the same weights.

    The devices sum in different orders (chunked channels-last on the CPU, one im2col GEMM per
    layer on the GPU path), and at batch 8 batch norm magnifies float32 rounding: measured
    0.2-0.7% of the gradient's norm on the CPU path and 0.4-0.9% on the GPU path, depending on
    the weights. Both must stay within 2% of the float64 step; the float64 test above is the
    exact one."""
    model = _googlenet(np.float32)
    truth_model, on_gpu = copy.deepcopy(model).to(dtype=np.float64), copy.deepcopy(model).to("cuda")
    x, y = _batch(np.float64)
    truth_loss, _, truth, _ = _one_step(truth_model, x, y, "cpu")
    cpu_loss, _, cpu, _ = _one_step(model, x.astype(np.float32), y, "cpu")
    gpu_loss, _, gpu, _ = _one_step(on_gpu, x.astype(np.float32), y, "cuda")
    assert gpu_loss == pytest.approx(truth_loss, rel=1e-5)
    cpu_error = _relative_error(_flat(cpu), _flat(truth))
    gpu_error = _relative_error(_flat(gpu), _flat(truth))
    assert gpu_error <= 2e-2 and cpu_error <= 2e-2, (gpu_error, cpu_error)


def test_float32_step_makes_no_float64_array_on_the_device(sim):
    model = _googlenet(np.float32).to("cuda")
    x, y = _batch(np.float32)
    _one_step(model, x, y, "cuda")  # the first step also creates the optimizer's buffers
    sim.stats.reset()
    _one_step(model, x, y, "cuda")
    assert sim.stats.created.get("float32", 0) > 100
    assert "float64" not in sim.stats.created, sim.stats.created


def test_a_step_moves_only_the_batch_and_returns_only_what_is_asked(sim):
    from googlenet_cli import make_loss

    model = _googlenet(np.float32).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = _batch(np.float32)
    for step in range(2):  # the first step allocates the momentum buffers: count both
        sim.stats.reset()
        xt, yt = md.tensor(x, device="cuda"), md.tensor(y, device="cuda")
        train_step(model, make_loss(0.3, 0.0), opt, xt, yt)
        assert sim.stats.to_device_calls == 2, step
        assert sim.stats.to_device_bytes == x.nbytes + y.nbytes, step
        # one read-back, the step's only synchronisation: the loss and the correct count
        assert sim.stats.to_host_calls == 1, step
        assert sim.stats.to_host_bytes == 2 * 4, step
        assert sim.stats.syncs == 1, step


def test_bad_targets_on_the_device_raise_after_the_step_not_a_sync_every_step(gpu):
    from googlenet_cli import make_loss

    model = _googlenet(np.float32).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.1)
    x, y = _batch(np.float32)
    y[3] = 10  # there are classes 0-9
    xt, yt = md.tensor(x, device="cuda"), md.tensor(y, device="cuda")
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\], got values in \[\d, 10\]"):
        train_step(model, make_loss(0.3, 0.0), opt, xt, yt)
    loss = md.functional.cross_entropy(md.tensor(np.zeros((2, 3)), device="cuda"), yt[:2] * 0 + 5)
    assert np.isnan(loss.item())  # the op alone: NaN on the device, no read-back


def test_a_default_training_step_syncs_once_and_launches_few_kernels(sim):
    """The command line's model (width 0.25, no auxiliary heads) and optimizer: one read-back a
    step; the kernel launches a GPU would run, counted (5,245 before the flat-buffer optimizer,
    the one-copy im2col and the gathered max pooling; bench/README.md has the breakdown)."""
    from googlenet import googlenet_cifar
    from googlenet_cli import make_loss

    nn.init.manual_seed(0)
    model = googlenet_cifar(width=0.25).fuse().to("cuda").train()  # as the command line has it
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = _batch(np.float32)
    for step in range(2):
        xt, yt = md.tensor(x, device="cuda"), md.tensor(y, device="cuda")
        sim.stats.reset()
        train_step(model, make_loss(0.3, 0.1), opt, xt, yt)
        assert sim.stats.syncs == 1, step
        assert sim.stats.launches <= 2_550, (step, sim.stats.launches)


def test_loader_sends_uint8_batches_to_the_device(sim):
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(10) % 10

    loader = DataLoader((images, labels), batch_size=4, shuffle=True, device="cuda", seed=0)
    seen = 0
    for x, y in loader:
        assert isinstance(x.data, cupy_sim.ndarray) and x.device == y.device == "cuda"
        seen += x.shape[0]
    assert seen == 10
    # uint8 pixels cross once (4x fewer bytes than float32), with int64 labels
    assert sim.stats.to_device_bytes == images.nbytes + labels.nbytes
    assert sim.stats.to_host_calls == 0


def test_batch_norm_refuses_running_statistics_on_another_device(gpu):
    x = md.tensor(np.ones((2, 3, 2, 2), dtype=np.float32), device="cuda")
    with pytest.raises(ValueError, match="running_mean must be on x's device 'cuda'"):
        md.functional.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32))


def _env(**extra):
    env = dict(os.environ, MPLBACKEND="Agg", **extra)
    env.pop("MINIDL_SIMULATE_CUDA", None)
    env.update(extra)
    return env


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(**env), timeout=120
    )


def test_environment_variable_selects_the_simulation_and_says_so_once():
    code = (
        "import minidl as md\n"
        "a = md.tensor([1.0, 2.0], device='cuda'); b = md.tensor([3.0], device='cuda')\n"
        "print(type(a.data).__module__, a.device, (a * 2).sum().item())\n"
    )
    result = _python(code, MINIDL_SIMULATE_CUDA="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["minidl.testing.cupy_sim._array", "cuda", "6.0"]
    assert result.stderr.count("SIMULATED") == 1
    if not backend.is_gpu_available():
        without = _python(code)
        assert without.returncode != 0
        assert "MINIDL_SIMULATE_CUDA=1" in without.stderr  # says how to test without a GPU


# a budgeted run also evaluates one test batch after its second step (to time it): that step
# is not counted as a training step's syncs
@pytest.mark.parametrize("length", [["--epochs", "1"], ["--time-budget-min", "0.15"]])
def test_cli_trains_on_the_simulated_gpu_and_the_checkpoint_evaluates_on_cpu(tmp_path, length):
    data = write_cifar(str(tmp_path / "data"), n_train=40, n_test=20)
    out = tmp_path / "run"
    common = ["--data", data, "--width", "0.0625", "--batch-size", "10"]
    train = subprocess.run(
        [sys.executable, str(ROOT / "googlenet.py"), "train", "--device", "cuda", *common]
        + [*length, "--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(MINIDL_SIMULATE_CUDA="1"),
        timeout=300,
        cwd=ROOT,
    )
    assert train.returncode == 0, train.stdout + train.stderr
    assert "SIMULATED" in train.stderr
    (counts,) = [line for line in train.stdout.splitlines() if line.startswith("simulated GPU")]
    assert "at most 1 synchronisation(s)" in counts and "kernel launches" in counts
    launches = int(re.search(r"([\d,]+) kernel launches", counts).group(1).replace(",", ""))
    assert launches <= 2_550, counts  # the command line fuses the model (~3,100 unfused)
    checkpoint = out / "last.npz"
    stored = md.load(checkpoint)
    weights = [getattr(v, "data", v) for v in stored["model"].values()]
    assert weights and all(isinstance(w, np.ndarray) for w in weights)  # saved as host arrays
    evaluate = subprocess.run(
        [sys.executable, str(ROOT / "googlenet.py"), "eval", "--checkpoint", str(checkpoint)]
        + ["--data", data, "--device", "cpu"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=ROOT,
    )
    assert evaluate.returncode == 0, evaluate.stdout + evaluate.stderr
    assert "accuracy" in evaluate.stdout.lower()


def test_gpu_lesson_runs_to_the_end_on_the_simulated_gpu(tmp_path):

    (lesson,) = (ROOT / "examples").glob("*_on_gpu.py")
    data = write_tiny_cifar(tmp_path / "data" / "cifar-10-batches-py")
    result = subprocess.run(
        [sys.executable, str(lesson), "--quick", "--data", str(data)],
        capture_output=True,
        text=True,
        env=_env(MINIDL_SIMULATE_CUDA="1", MINIDL_EXAMPLES_OUTPUT=str(tmp_path / "out")),
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIMULATED" in result.stderr
    assert "no GPU" not in result.stdout
