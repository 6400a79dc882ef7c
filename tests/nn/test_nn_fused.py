"""minidl.nn._fused: the fused paths the layers take give what the modules give one by one."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import nn
from minidl.nn._fused import batch_norm_relu, can_stack


def test_public_batch_norm_takes_pytorchs_arguments_only():
    names = list(inspect.signature(F.batch_norm).parameters)
    assert names == [
        "x", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"
    ]  # fmt: skip
    assert list(inspect.signature(nn.BatchNorm2d.forward).parameters) == ["self", "x"]


@pytest.mark.parametrize("momentum", [0.1, None])  # None: the cumulative average
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_equals_relu_of_the_module(momentum, training):
    """Output, gradients, running statistics and the batch count, in float64."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 4)) + 0.3
    gy, gamma = rng.standard_normal(x.shape), rng.uniform(0.5, 1.5, 5)
    results = []
    for fused in (True, False):
        bn = nn.BatchNorm2d(5, momentum=momentum).double()
        bn.weight.data[...] = gamma
        bn.train(training)
        t = md.Tensor(x.copy(), requires_grad=True)
        for _ in range(2):  # twice: the cumulative average needs a count above 1
            y = batch_norm_relu(bn, t) if fused else F.relu(bn(t))
        y.backward(md.Tensor(gy))
        state = {k: v.numpy().copy() for k, v in bn.state_dict().items()}
        results.append((y.numpy(), t.grad.numpy(), bn.weight.grad.numpy(), state))
    (y1, gx1, gw1, s1), (y0, gx0, gw0, s0) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw1, gw0, rtol=1e-10, atol=1e-12)
    for key in s0:
        np.testing.assert_array_equal(s1[key], s0[key], err_msg=key)
    assert s1["num_batches_tracked"] == (2 if training else 0)


def test_batch_norm_relu_checks_the_input_like_the_module():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\) expects input"):
        batch_norm_relu(nn.BatchNorm2d(4), md.tensor(np.zeros((2, 3, 2, 2), np.float32)))


class Unit(nn.Module):
    def __init__(self, cin, cout, kernel=1, eps=1e-3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)


def test_can_stack_only_alike_1x1_units_in_training_with_a_graph():
    units = [Unit(4, 2), Unit(4, 3)]
    assert can_stack(units)
    with md.no_grad():
        assert not can_stack(units)  # without a graph the units run one by one (hooks, summary)
    assert not can_stack([u.eval() for u in units])
    assert not can_stack([Unit(4, 2), Unit(4, 3, kernel=3)])
    assert not can_stack([Unit(4, 2), Unit(4, 3, eps=1e-5)])
