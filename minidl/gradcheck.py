"""Gradient checking: compare backward's analytic gradient with central differences.

For an op y = f(x) and a random upstream gradient g (random so that every output element's
gradient matters, unlike all-ones), the scalar L(x) = sum(g * f(x)) has dL/dx = the vector-Jacobian
product that backward computes. Numerically, per element:

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)        (error O(eps^2))

That needs two evaluations per element, so inputs up to ``full_limit`` elements get the full check;
larger ones are checked along random directions v: (L(x + eps v) - L(x - eps v)) / (2 eps) must
equal sum(dL/dx * v). Always in float64: in float32 the rounding error eps_machine * |L| / eps
swamps the derivative.

``python -m minidl.gradcheck`` runs every case the ops registered and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import get_array_module, module_for, to_numpy
from .function import no_grad
from .registry import gradcheck_cases
from .tensor import Tensor


@dataclass
class GradCheckResult:
    """Outcome of ``check_grad``: the worst relative error over all inputs, and where it was."""

    ok: bool
    max_rel_error: float
    tol: float
    report: str

    def __bool__(self) -> bool:
        return self.ok


def _is_float(a: Any) -> bool:
    return np.issubdtype(a.dtype, np.floating)


def _loss(fn: Callable, arrays: Sequence[Any], upstream: Any) -> float:
    with no_grad():
        y = fn(*(Tensor(a) for a in arrays))
    return float((y.data * upstream).sum())


def numerical_grad(
    fn: Callable, inputs: Sequence[Any], upstream: Any, index: int, eps: float = 1e-6
) -> Any:
    """Central-difference gradient of sum(upstream * fn(*inputs)) w.r.t. ``inputs[index]``."""
    xp = get_array_module(inputs[index])
    arrays = [a.copy() for a in inputs]
    x = arrays[index]
    grad = xp.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):
        old = flat_x[i].item()
        flat_x[i] = old + eps
        plus = _loss(fn, arrays, upstream)
        flat_x[i] = old - eps
        minus = _loss(fn, arrays, upstream)
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * eps)
    return grad


def _directional(fn, inputs, upstream, index, direction, eps):
    plus = [a.copy() for a in inputs]
    minus = [a.copy() for a in inputs]
    plus[index] += eps * direction
    minus[index] -= eps * direction
    return (_loss(fn, plus, upstream) - _loss(fn, minus, upstream)) / (2 * eps)


def _rel_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    # a floor tied to the gradient's overall scale keeps near-zero elements from dividing by ~0
    floor = 1e-7 * max(1.0, float(np.abs(numeric).max(initial=0.0)))
    return np.abs(analytic - numeric) / np.maximum(
        np.maximum(np.abs(analytic), np.abs(numeric)), floor
    )


def check_grad(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    tol: float = 1e-6,
    eps: float = 1e-6,
    seed: int = 0,
    full_limit: int = 200,
    directions: int = 3,
    raise_on_failure: bool = True,
) -> GradCheckResult:
    """Check ``fn``'s backward at ``inputs`` (float64 arrays; integer arrays are constants).

    Returns a GradCheckResult; raises AssertionError with a report naming the input, the worst
    element, both gradients and the relative error when ``raise_on_failure`` and the check fails.
    """
    arrays = [a.data if isinstance(a, Tensor) else a for a in inputs]
    xp = get_array_module(*arrays)
    arrays = [xp.asarray(a) for a in arrays]
    for i, a in enumerate(arrays):
        if _is_float(a) and a.dtype != np.float64:
            raise TypeError(f"check_grad: input {i} must be float64 (got {a.dtype}); see docstring")
    leaves = [Tensor(a.copy(), requires_grad=_is_float(a)) for a in arrays]
    y = fn(*leaves)
    rng = np.random.default_rng(seed)
    upstream = xp.asarray(rng.standard_normal(y.shape))
    y.backward(upstream)

    worst, lines = 0.0, []
    for i, (a, leaf) in enumerate(zip(arrays, leaves)):
        if not _is_float(a):
            continue
        if leaf.grad is None:
            raise AssertionError(f"check_grad: input {i} {a.shape} received no gradient")
        analytic = to_numpy(leaf.grad.data)
        if a.size <= full_limit:
            numeric = to_numpy(numerical_grad(fn, arrays, upstream, i, eps))
            err = _rel_error(analytic, numeric)
            k = int(err.argmax()) if err.size else 0
            where = np.unravel_index(k, a.shape) if a.ndim else ()
            e = float(err.reshape(-1)[k]) if err.size else 0.0
            worst_a, worst_n = analytic.reshape(-1)[k], numeric.reshape(-1)[k]
            lines.append(
                f"input {i} {a.shape} (full Jacobian): worst element "
                f"{tuple(int(j) for j in where)}: analytic {worst_a:.10g}, "
                f"numerical {worst_n:.10g}, relative error {e:.3g}"
            )
        else:
            e = 0.0
            for d in range(directions):
                v = xp.asarray(rng.standard_normal(a.shape))
                numeric_d = _directional(fn, arrays, upstream, i, v, eps)
                analytic_d = float((analytic * to_numpy(v)).sum())
                ed = float(_rel_error(np.array(analytic_d), np.array(numeric_d)))
                if ed >= e:
                    e = ed
                    detail = (
                        f"direction {d}: analytic {analytic_d:.10g}, numerical {numeric_d:.10g}"
                    )
            lines.append(
                f"input {i} {a.shape} ({directions} random directions): worst {detail}, "
                f"relative error {e:.3g}"
            )
        worst = max(worst, e)
    ok = worst <= tol
    report = "\n".join(lines) + f"\nmax relative error {worst:.3g} (tolerance {tol:g})"
    if raise_on_failure and not ok:
        raise AssertionError("gradient check failed:\n" + report)
    return GradCheckResult(ok, worst, tol, report)


def run_all(
    device: str = "cpu", stream: Any = sys.stdout, ops: Sequence[str] | None = None
) -> bool:
    """Check every registered case on ``device``; print a table; True when all pass."""
    xp = module_for(device)
    cases = [c for c in gradcheck_cases() if ops is None or c.op in ops]
    header = f"{'op':<22} {'case':<28} {'shapes':<30} {'max rel err':>11} {'tol':>8}  ok"
    print(header, file=stream)
    print("-" * len(header), file=stream)
    failures = 0
    for case in cases:
        arrays = [xp.asarray(a) for a in case.inputs]
        res = check_grad(case.fn, arrays, tol=case.tol, eps=case.eps, raise_on_failure=False)
        failures += not res.ok
        print(
            f"{case.op:<22} {case.label[:28]:<28} {case.shapes[:30]:<30} "
            f"{res.max_rel_error:>11.2e} {case.tol:>8.0e}  {'yes' if res.ok else 'NO'}",
            file=stream,
        )
        if not res.ok:
            print("    " + res.report.replace("\n", "\n    "), file=stream)
    print(
        f"\n{len(cases) - failures}/{len(cases)} checks passed over "
        f"{len({c.op for c in cases})} ops on {device}",
        file=stream,
    )
    return failures == 0


def main(argv: Sequence[str] | None = None) -> int:
    import minidl  # noqa: F401  (importing the package registers every op's cases)

    parser = argparse.ArgumentParser(description="Gradient-check every minidl op (float64).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--op", action="append", help="only this op (repeatable)")
    args = parser.parse_args(argv)
    return 0 if run_all(args.device, ops=args.op) else 1


if __name__ == "__main__":
    sys.exit(main())
