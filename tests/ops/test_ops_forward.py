"""Forward values of the elementwise, reduction, shape, linear-algebra and activation ops,
against NumPy written out independently."""

from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl.backend import to_numpy

RNG = np.random.default_rng(7)
A = RNG.standard_normal((2, 3, 4))
B = RNG.standard_normal((3, 4))
P = np.abs(RNG.standard_normal((2, 3, 4))) + 0.1


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


CASES = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, (A, B)),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, (A, B)),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, (A, B)),
    "div": (lambda a, b: a / b, lambda a, b: a / b, (A, P)),
    "neg": (lambda a: -a, lambda a: -a, (A,)),
    "pow": (lambda a: a**1.5, lambda a: a**1.5, (P,)),
    "exp": (lambda a: a.exp(), np.exp, (A,)),
    "log": (lambda a: a.log(), np.log, (P,)),
    "sum": (lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(axis=(0, 2)), (A,)),
    "mean keepdims": (lambda a: a.mean(1, True), lambda a: a.mean(1, keepdims=True), (A,)),
    "max": (lambda a: a.max(axis=-1), lambda a: a.max(axis=-1), (A,)),
    "reshape": (lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6), (A,)),
    "transpose": (lambda a: a.transpose(2, 0, 1), lambda a: a.transpose(2, 0, 1), (A,)),
    "getitem": (lambda a: a[1, ::2, [0, 3]], lambda a: a[1, ::2, [0, 3]], (A,)),
    "concat": (lambda a, b: md.concat([a, b], 2), lambda a, b: np.concatenate([a, b], 2), (A, A)),
    "matmul": (lambda a, b: a @ b.T, lambda a, b: np.einsum("ijk,lk->ijl", a, b), (A, B)),
    "linear": (
        lambda a, b: md.F.linear(a, b, b[:, 0]),
        lambda a, b: np.einsum("ijk,lk->ijl", a, b) + b[:, 0],
        (A, B),
    ),
    "relu": (md.F.relu, lambda a: np.where(a > 0, a, 0.0), (A,)),
    "sigmoid": (md.F.sigmoid, lambda a: 1 / (1 + np.exp(-a)), (A,)),
    "tanh": (md.F.tanh, np.tanh, (A,)),
    "softmax": (lambda a: md.F.softmax(a, axis=1), lambda a: _softmax(a, 1), (A,)),
    "log_softmax": (
        lambda a: md.F.log_softmax(a, axis=-1),
        lambda a: np.log(_softmax(a, -1)),
        (A,),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_numpy(name, xp):
    fn, reference, inputs = CASES[name]
    tensors = [md.Tensor(xp.asarray(a)) for a in inputs]
    np.testing.assert_allclose(
        to_numpy(fn(*tensors).data), reference(*inputs), rtol=1e-12, atol=1e-12
    )


def test_softmax_and_log_softmax_are_stable_for_huge_logits(xp):
    x = md.Tensor(xp.asarray([[1e4, 0.0, -1e4]], dtype=np.float32))
    assert np.isfinite(md.F.log_softmax(x).numpy()).all()
    np.testing.assert_allclose(md.F.softmax(x).numpy(), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(md.F.sigmoid(md.Tensor(xp.asarray([-1e4, 1e4]))).numpy(), [0, 1])


def test_max_ties_share_the_gradient(xp):
    x = md.Tensor(xp.asarray([1.0, 3.0, 3.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.5, 0.5])


def test_split_gradient_joins_channel_slices_into_a_channels_last_buffer():
    """split's backward joins its gradients; when they are channels-last or channel slices of a
    channels-last buffer (what concat's backward hands out), the join stays channels-last."""
    from minidl.ops.layout import is_channels_last, nchw_view
    from minidl.ops.shape import _join

    rng = np.random.default_rng(8)
    x = md.Tensor(nchw_view(rng.standard_normal((2, 3, 4, 6))), requires_grad=True)
    a, b, c = md.split(x, [1, 3, 2], axis=1)
    y = md.concat([a * 2.0, b, c], axis=1)  # split gets a fresh gradient and two channel slices
    gy = nchw_view(rng.standard_normal((2, 3, 4, 6)))
    y.backward(md.Tensor(gy))
    expected = gy.copy()
    expected[:, :1] *= 2.0
    np.testing.assert_array_equal(x.grad.numpy(), expected)
    assert is_channels_last(x.grad.data)

    wide = nchw_view(rng.standard_normal((2, 3, 4, 5)))
    grads = [wide[:, 4:5], nchw_view(rng.standard_normal((2, 3, 4, 3))), wide[:, 1:3]]
    joined = _join(grads, 1)
    assert is_channels_last(joined)
    np.testing.assert_array_equal(joined, np.concatenate(grads, axis=1))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_concat_of_mixed_dtypes_promotes_on_every_layout(xp, layout):
    """float32 and float64 inputs joined on channels: float64 values, as np.concatenate gives,
    whether the inputs are NCHW or channels-last (the channels-last copy casts, never fails)."""
    from minidl.ops.layout import nchw_view

    rng = np.random.default_rng(10)
    parts = [rng.standard_normal((2, 4, 3, c)).astype(t) for c, t in ((3, "f4"), (2, "f8"))]
    arrays = [xp.asarray(p.transpose(0, 3, 1, 2).copy()) for p in parts]
    if layout == "channels_last":
        arrays = [nchw_view(xp.asarray(p)) for p in parts]
    y = md.concat([md.Tensor(a) for a in arrays], axis=1)
    expected = np.concatenate([p.transpose(0, 3, 1, 2) for p in parts], axis=1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.numpy(), expected)


def test_concat_slots_copies_only_the_inputs_not_already_in_place(xp):
    """concat_slots returns the buffer channel_slots made: a slice an op already wrote (the same
    array) is left as it is, the other inputs are copied in; backward hands out gy's slices."""
    from minidl.ops.layout import is_channels_last
    from minidl.ops.shape import channel_slots, concat_slots

    rng = np.random.default_rng(9)
    whole, slices = channel_slots(xp.asarray(rng.standard_normal((3, 1, 4, 5))), [2, 3, 1])
    assert whole.shape == (3, 6, 4, 5) and is_channels_last(whole)
    assert [s.shape[1] for s in slices] == [2, 3, 1]
    slices[1][...] = xp.asarray(rng.standard_normal((3, 3, 4, 5)))  # "an op wrote it there"
    written = slices[1].copy()
    a = md.Tensor(xp.asarray(rng.standard_normal((3, 2, 4, 5))), requires_grad=True)
    b = md.Tensor(slices[1], requires_grad=True)
    c = md.Tensor(xp.asarray(rng.standard_normal((3, 1, 4, 5))), requires_grad=True)
    y = concat_slots([a, b, c], (whole, slices))
    assert y.data is whole
    expected = np.concatenate([to_numpy(a.data), to_numpy(written), to_numpy(c.data)], axis=1)
    np.testing.assert_array_equal(y.numpy(), expected)
    gy = rng.standard_normal(y.shape)
    y.backward(md.Tensor(xp.asarray(gy)))
    for t, (lo, hi) in zip((a, b, c), ((0, 2), (2, 5), (5, 6))):
        np.testing.assert_array_equal(t.grad.numpy(), gy[:, lo:hi])
    with pytest.raises(ValueError, match=r"concat_slots: tensors must have the slices' shapes"):
        concat_slots([a, c], channel_slots(a.data, [2, 3, 1]))
