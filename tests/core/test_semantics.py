"""PyTorch's semantics where minidl claims them: axes (negative ones, out-of-range ones),
flatten, 1-D operands of matmul, and clear errors for bad arguments."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import nn
from minidl.gradcheck import check_grad
from minidl.ops.linalg import MATMUL_VECTOR_CASES


def _t(device, shape, dtype=np.float32, seed=0):
    """A tensor of random values made on the host and moved to ``device``."""
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return md.tensor(data, device=device)


# ---------------------------------------------------------------------------- axes
OUT_OF_RANGE = {  # op on a 3-D tensor x (2, 3, 4) with an axis outside [-3, 2]; the argument named
    "concat axis=3": (lambda x: md.concat([x, x], axis=3), "concat", "axis=3"),
    "concat axis=-4": (lambda x: md.concat([x, x], axis=-4), "concat", "axis=-4"),
    "split axis=3": (lambda x: md.split(x, [1, 1], axis=3), "split", "axis=3"),
    "flatten start_dim": (lambda x: F.flatten(x, 3), "flatten", "start_dim=3"),
    "flatten end_dim": (lambda x: F.flatten(x, 0, -4), "flatten", "end_dim=-4"),
    "Tensor.flatten": (lambda x: x.flatten(5), "flatten", "start_dim=5"),
    "nn.Flatten": (lambda x: nn.Flatten(1, 3)(x), "flatten", "end_dim=3"),
    "sum": (lambda x: x.sum(axis=3), "sum", "axis=3"),
    "mean tuple": (lambda x: x.mean(axis=(0, -4)), "mean", "axis=-4"),
    "max": (lambda x: x.max(axis=-4), "max", "axis=-4"),
    "transpose": (lambda x: x.transpose(0, 1, 3), "transpose", "axes=3"),
    "softmax": (lambda x: F.softmax(x, axis=3), "softmax", "axis=3"),
    "log_softmax": (lambda x: F.log_softmax(x, axis=-4), "log_softmax", "axis=-4"),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
def test_out_of_range_axis_is_an_error_naming_op_and_argument(case, device):
    """As torch's "Dimension out of range": never a silent wrap-around (concat(axis=4) on a 4-D
    tensor used to join on axis 0). The error is both an IndexError, as PyTorch's, and a
    ValueError, as the rest of minidl's argument errors."""
    fn, op, argument = OUT_OF_RANGE[case]
    x = _t(device, (2, 3, 4))
    for error in (IndexError, ValueError):
        with pytest.raises(error) as info:
            fn(x)
        message = str(info.value)
        assert op in message and argument in message and "[-3, 2]" in message, message


def test_concat_axis_four_of_a_4d_tensor_no_longer_joins_axis_0(device):
    x = _t(device, (1, 2, 3, 4))
    with pytest.raises(IndexError, match=r"concat: axis=4 is out of range for a 4-D tensor"):
        md.concat([x, x], axis=4)


def test_duplicate_reduction_axes_are_an_error(device):
    with pytest.raises(ValueError, match=r"sum: axis \(1, -2\) names an axis more than once"):
        _t(device, (2, 3, 4)).sum(axis=(1, -2))


def test_negative_axes_within_range_count_from_the_end(device):
    host = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    x = md.tensor(host, device=device)
    checks = [
        (md.concat([x, x], axis=-1), np.concatenate([host, host], axis=-1)),
        (md.concat([x, x], axis=-3), np.concatenate([host, host], axis=0)),
        (md.split(x, [1, 3], axis=-1)[1], host[..., 1:]),
        (x.sum(axis=-1), host.sum(axis=2)),
        (x.mean(axis=(-1, 0)), host.mean(axis=(0, 2))),
        (x.max(axis=-2), host.max(axis=1)),
        (x.transpose(-1, 0, -2), host.transpose(2, 0, 1)),
        (F.flatten(x, -2), host.reshape(2, 12)),
        (F.softmax(x, axis=-2), np.exp(host) / np.exp(host).sum(axis=1, keepdims=True)),
    ]
    for got, expected in checks:
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


# ---------------------------------------------------------------------------- flatten
FLATTEN_SHAPES = {  # call on x (2, 3, 4, 5) -> shape; torch.flatten / nn.Flatten give the same
    "F.flatten(x)": (lambda x: F.flatten(x), (120,)),
    "x.flatten()": (lambda x: x.flatten(), (120,)),
    "F.flatten(x, 1)": (lambda x: F.flatten(x, 1), (2, 60)),
    "F.flatten(x, 1, 2)": (lambda x: F.flatten(x, 1, 2), (2, 12, 5)),
    "x.flatten(0, -2)": (lambda x: x.flatten(0, -2), (24, 5)),
    "x.flatten(2, 2)": (lambda x: x.flatten(2, 2), (2, 3, 4, 5)),
    "nn.Flatten()": (lambda x: nn.Flatten()(x), (2, 60)),
    "nn.Flatten(0, 1)": (lambda x: nn.Flatten(0, 1)(x), (6, 4, 5)),
}


@pytest.mark.parametrize("call", FLATTEN_SHAPES)
def test_flatten_follows_torch_flatten(call, device):
    fn, shape = FLATTEN_SHAPES[call]
    host = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    y = fn(md.tensor(host, device=device))
    assert y.shape == shape
    np.testing.assert_array_equal(y.numpy(), host.reshape(shape))


@pytest.mark.torch
@pytest.mark.parametrize("call", FLATTEN_SHAPES)
def test_flatten_shapes_are_torchs(call):
    torch = pytest.importorskip("torch")
    x = torch.zeros(2, 3, 4, 5)
    calls = {
        "F.flatten(x)": lambda: torch.flatten(x),
        "x.flatten()": lambda: x.flatten(),
        "F.flatten(x, 1)": lambda: torch.flatten(x, 1),
        "F.flatten(x, 1, 2)": lambda: torch.flatten(x, 1, 2),
        "x.flatten(0, -2)": lambda: x.flatten(0, -2),
        "x.flatten(2, 2)": lambda: x.flatten(2, 2),
        "nn.Flatten()": lambda: torch.nn.Flatten()(x),
        "nn.Flatten(0, 1)": lambda: torch.nn.Flatten(0, 1)(x),
    }
    assert tuple(calls[call]().shape) == FLATTEN_SHAPES[call][1]


def test_flatten_edge_cases(device):
    assert md.tensor(3.0, device=device).flatten().shape == (1,)  # 0-D -> 1-D, as torch
    empty = md.tensor(np.zeros((0, 3, 2), np.float32), device=device)
    assert F.flatten(empty, 1).shape == (0, 6)
    with pytest.raises(ValueError, match=r"start_dim=2 must not come after end_dim=1"):
        F.flatten(empty, 2, 1)


def test_flatten_gradient(device):
    x = md.tensor(np.ones((2, 3, 4), np.float32), requires_grad=True, device=device)
    (F.flatten(x, 1) * md.tensor(np.arange(12, dtype=np.float32), device=device)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tile(np.arange(12.0).reshape(3, 4), (2, 1, 1)))


# ---------------------------------------------------------------------------- matmul
@pytest.mark.parametrize("name, a_shape, b_shape", MATMUL_VECTOR_CASES)
def test_matmul_with_vectors_forward_as_numpy(name, a_shape, b_shape, device):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    ta, tb = md.tensor(a, device=device), md.tensor(b, device=device)
    for y in (ta @ tb, F.matmul(ta, tb)):
        assert y.shape == np.matmul(a, b).shape
        np.testing.assert_allclose(y.numpy(), a @ b, rtol=1e-12)


@pytest.mark.parametrize("name, a_shape, b_shape", MATMUL_VECTOR_CASES)
def test_matmul_with_vectors_gradcheck(name, a_shape, b_shape, xp):
    """float64, central differences, a random upstream gradient (check_grad draws one)."""
    rng = np.random.default_rng(1)
    check_grad(md.F.matmul, [xp.asarray(rng.standard_normal(s)) for s in (a_shape, b_shape)])


@pytest.mark.torch
@pytest.mark.parametrize("name, a_shape, b_shape", MATMUL_VECTOR_CASES)
def test_matmul_with_vectors_matches_torch(name, a_shape, b_shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    g = rng.standard_normal(np.matmul(a, b).shape)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    ty = ta @ tb
    ty.backward(torch.tensor(g))
    ma, mb = (md.tensor(v, requires_grad=True) for v in (a, b))
    my = ma @ mb
    my.backward(g)
    assert my.shape == tuple(ty.shape)
    np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ma.grad.numpy(), ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mb.grad.numpy(), tb.grad.numpy(), rtol=1e-12)


def test_matmul_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"at least 1 dimension.*\(\).*\(3,\)"):
        md.tensor(2.0) @ md.tensor(np.ones(3))
    with pytest.raises(ValueError, match=r"inner dimensions.*\(1, 3\).*\(4, 1\)"):
        md.tensor(np.ones(3)) @ md.tensor(np.ones(4))


# ---------------------------------------------------------------------------- argument errors
ARGUMENT_ERRORS = {  # call, error, words the message must hold (argument, expected, actual)
    "linear bias (3,) for 4 outputs": (
        lambda d: F.linear(_t(d, (2, 3)), _t(d, (4, 3)), _t(d, (3,))),
        ValueError,
        ["linear", "bias", "(4,)", "(3,)"],
    ),
    "linear bias (1,) broadcast silently": (
        lambda d: F.linear(_t(d, (2, 3)), _t(d, (4, 3)), _t(d, (1,))),
        ValueError,
        ["bias", "(4,)", "(1,)"],
    ),
    "linear weight 1-D": (
        lambda d: F.linear(_t(d, (2, 3)), _t(d, (3,))),
        ValueError,
        ["weight", "2-D", "(3,)"],
    ),
    "concat axis=1.5": (
        lambda d: md.concat([_t(d, (2, 3)), _t(d, (2, 3))], axis=1.5),
        TypeError,
        ["concat", "axis", "int", "1.5"],
    ),
    "split(x, 3)": (
        lambda d: md.split(_t(d, (6, 2)), 3),
        TypeError,
        ["split", "sections", "list of ints", "got 3"],
    ),
    "split sizes 1.5": (
        lambda d: md.split(_t(d, (3, 2)), [1.5, 1.5]),
        TypeError,
        ["sections", "list of ints", "1.5"],
    ),
}


@pytest.mark.parametrize("case", ARGUMENT_ERRORS)
def test_argument_errors_name_argument_expected_and_actual(case, device):
    call, error, words = ARGUMENT_ERRORS[case]
    with pytest.raises(error) as info:
        call(device)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---------------------------------------------------------------------------- type hints
@pytest.mark.parametrize("name", F.__all__)
def test_every_public_functional_has_type_hints(name):
    """The public API is type hinted (GUIDE, Style): the return type and every argument."""
    fn = getattr(F, name)
    hints = typing.get_type_hints(fn)
    assert "return" in hints, f"F.{name} has no return type hint"
    bare = [p for p in inspect.signature(fn).parameters if p not in hints]
    assert not bare, f"F.{name}: arguments without a type hint: {bare}"
