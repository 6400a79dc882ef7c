"""``python -m minidl.gpucheck``: what a GPU owner runs first.

1. CuPy and its CUDA libraries load: one kernel each of NVRTC (elementwise), cuBLAS (matmul) and
   cuRAND (dropout's masks) runs on the GPU (``minidl.backend.gpu_status``).
2. One of each op runs on the GPU: the first gradient-check case of every registered op, forward
   and backward in float64, equal to the CPU's within 1e-8 (relative).
3. A float32 training step of the CIFAR GoogLeNet (width 0.25, dropout off) equals the CPU's float32
   step within float32 error: both within 2% of a float64 CPU step, gradients as one vector.
4. What a training step costs the device: its synchronisations and kernel launches (counted on the
   simulated CuPy, where every launch passes through minidl's code) or its time (on a real GPU).

``--simulate`` (or ``MINIDL_SIMULATE_CUDA=1``) runs it all on the simulated CuPy, as CI does.
Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import backend, nn, optim
from .registry import gradcheck_cases
from .tensor import tensor

OP_TOLERANCE = 1e-8  # float64, same formulas, different summation orders
STEP_TOLERANCE = 2e-2  # float32 at batch 8 through 37 batch norms (tests/cuda/test_cupy_backend.py)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / (np.linalg.norm(want) + 1e-30))


def _run_case(case: Any, device: str) -> list[np.ndarray]:
    """The case's output and its inputs' gradients, as host arrays."""
    inputs = [tensor(a, requires_grad=a.dtype.kind == "f", device=device) for a in case.inputs]
    out = case.fn(*inputs)
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(tensor(upstream.astype(out.dtype), device=device))
    results = [out.numpy()]
    for t in inputs:
        if t.requires_grad:
            assert t.grad is not None  # (gradcheck's cases give every float input a gradient)
            results.append(t.grad.numpy())
    return results


def check_ops() -> list[tuple[str, float]]:
    """(op, the worst relative difference GPU vs CPU) for the first case of every op."""
    first: dict[str, Any] = {}
    for case in gradcheck_cases():
        first.setdefault(case.op, case)
    rows = []
    for op, case in sorted(first.items()):
        cpu, gpu = _run_case(case, "cpu"), _run_case(case, "cuda")
        rows.append((op, max(_relative(g, c) for g, c in zip(gpu, cpu))))
    return rows


def _googlenet(dtype: Any) -> Any:
    from googlenet import googlenet_cifar

    nn.init.manual_seed(0)
    model = googlenet_cifar(width=0.25).fuse().to(dtype=dtype)  # as the command line has it
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # each device draws its own masks
    return model.train()


def _step(model: Any, x: np.ndarray, y: np.ndarray, device: str) -> tuple[float, np.ndarray]:
    """One SGD step; the loss and every gradient laid end to end (float64, host)."""
    from .functional import cross_entropy
    from .train import train_step

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loss, _ = train_step(
        model, cross_entropy, opt, tensor(x, device=device), tensor(y, device=device)
    )
    grads = [p.grad.numpy().astype(np.float64).ravel() for _, p in model.named_parameters()]
    return loss, np.concatenate(grads)


def check_step() -> tuple[float, float]:
    """(GPU error, CPU error) of a float32 step, each against the float64 CPU step."""
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((8, 3, 32, 32)), rng.integers(0, 10, 8)
    model = _googlenet(np.float32)
    _, truth = _step(copy.deepcopy(model).to(dtype=np.float64), x, y, "cpu")
    _, cpu = _step(copy.deepcopy(model), x.astype(np.float32), y, "cpu")
    _, gpu = _step(model.to("cuda"), x.astype(np.float32), y, "cuda")
    return _relative(gpu, truth), _relative(cpu, truth)


def step_cost(xp: ModuleType, batch: int, steps: int = 3) -> dict[str, float]:
    """Per training step on the device: syncs and launches (simulation) or seconds (a GPU)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, batch)
    model = _googlenet(np.float32).to("cuda")
    from .functional import cross_entropy
    from .train import train_step

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xt, yt = tensor(x, device="cuda"), tensor(y, device="cuda")
    train_step(model, cross_entropy, opt, xt, yt)  # warm-up: kernels compile, buffers appear
    backend.synchronize()
    simulated = backend.is_simulated(xp)
    if simulated:
        xp.stats.reset()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, cross_entropy, opt, xt, yt)
    backend.synchronize()
    cost = {"seconds": (time.perf_counter() - start) / steps}
    if simulated:
        cost.update(syncs=xp.stats.syncs / steps, launches=xp.stats.launches / steps)
    return cost


@contextlib.contextmanager
def _device(simulate: bool) -> Iterator[ModuleType]:
    if simulate:
        with backend.simulate_cuda() as sim:
            yield sim
    else:
        yield backend.import_cupy()


def _describe(xp: ModuleType) -> str:
    if backend.is_simulated(xp):
        return f"the SIMULATED CuPy {xp.__version__} (NumPy on the CPU; for testing, not timing)"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name}, CuPy {xp.__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minidl.gpucheck", description=__doc__)
    parser.add_argument("--simulate", action="store_true", help="run on the simulated CuPy")
    parser.add_argument("--batch", type=int, default=128, help="batch of the timed steps")
    args = parser.parse_args(argv)
    simulate = args.simulate or backend.simulation_requested()
    if not simulate:
        ok, why = backend.gpu_status()
        if not ok:
            print(f"FAIL libraries: {why}")
            return 1
    failed = 0
    with _device(simulate) as xp:
        libraries = "no CUDA libraries to load" if simulate else "NVRTC, cuBLAS and cuRAND ran"
        print(f"ok   device: {_describe(xp)}; {libraries}")
        rows = check_ops()
        worst = max(rows, key=lambda r: r[1])
        bad = [op for op, err in rows if not err <= OP_TOLERANCE]
        failed += bool(bad)
        print(
            f"{'FAIL' if bad else 'ok  '} ops: {len(rows)} ops forward and backward in float64 "
            f"equal the CPU's (worst {worst[0]}, relative difference {worst[1]:.1e}"
            + (f"; over {OP_TOLERANCE:g}: {', '.join(bad)})" if bad else ")")
        )
        gpu_error, cpu_error = check_step()
        step_ok = gpu_error <= STEP_TOLERANCE
        failed += not step_ok
        print(
            f"{'ok  ' if step_ok else 'FAIL'} step: a float32 GoogLeNet training step's gradients "
            f"are {gpu_error:.2%} from the float64 step on the GPU, {cpu_error:.2%} on the CPU "
            f"(both must be within {STEP_TOLERANCE:.0%})"
        )
        batch = min(args.batch, 8) if backend.is_simulated(xp) else args.batch  # counts: any
        cost = step_cost(xp, batch)
        if "launches" in cost:
            print(
                f"info per training step (width 0.25): {cost['syncs']:.0f} synchronisation(s), "
                f"{cost['launches']:.0f} kernel launches"
            )
        else:
            print(
                f"info per training step (width 0.25, batch {batch}): "
                f"{cost['seconds'] * 1e3:.1f} ms, {batch / cost['seconds']:.0f} images/s "
                "(syncs and launches are counted on the simulation: --simulate)"
            )
    print("all checks passed" if not failed else f"{failed} check(s) FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
