"""The gradient checker itself: it must catch a wrong backward and report where."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import minidl as md
from minidl.function import Function
from minidl.gradcheck import check_grad, numerical_grad
from minidl.registry import registered_ops


class WrongSquare(Function):
    """y = x^2 with a deliberately wrong backward (forgets the factor 2)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * self.x


def test_numerical_grad_of_a_known_function():
    x = np.array([1.0, -2.0, 0.5])
    g = np.array([0.3, -1.0, 2.0])
    num = numerical_grad(lambda t: t * t * t, [x], g, index=0)
    np.testing.assert_allclose(num, g * 3 * x**2, rtol=1e-8)


@pytest.mark.parametrize("shape", [(3, 4), (20, 30)], ids=["full Jacobian", "directional"])
def test_check_grad_catches_a_wrong_backward(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    with pytest.raises(AssertionError) as info:
        check_grad(lambda t: WrongSquare()(t), [x])
    report = str(info.value)
    assert "input 0" in report and "analytic" in report and "numerical" in report
    assert "relative error" in report


def test_check_grad_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        check_grad(md.F.tanh, [np.ones(3, np.float32)])


def test_cli_lists_every_op_and_exits_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "minidl.gradcheck"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines()[2:] if line.strip()}
    for op in registered_ops():
        assert op in listed
    for op in [
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "pow",
        "exp",
        "log",
        "sum",
        "mean",
        "max",
        "reshape",
        "transpose",
        "getitem",
        "concat",
        "matmul",
        "linear",
        "relu",
        "sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
    ]:
        assert op in registered_ops()
