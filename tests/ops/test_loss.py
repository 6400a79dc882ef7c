"""cross_entropy: hand-computed values, label smoothing, reductions, stability, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
import minidl.functional as F


def _reference(x, t, eps=0.0):
    """Per-row loss from the definition, in float64 with math.log/exp (x small enough here)."""
    out = []
    for row, target in zip(x, t):
        logz = math.log(sum(math.exp(v) for v in row))
        logp = [v - logz for v in row]
        k = len(row)
        out.append(-sum(((1 - eps) * (j == target) + eps / k) * lp for j, lp in enumerate(logp)))
    return np.array(out)


def test_hand_computed_value():
    # logits (0, 0): p = 1/2 each, loss log 2; logits (log 3, 0): p(target 0) = 3/4
    x = md.tensor(np.array([[0.0, 0.0], [math.log(3), 0.0]]), dtype=np.float64)
    y = F.cross_entropy(x, np.array([1, 0]), reduction="none")
    np.testing.assert_allclose(y.numpy(), [math.log(2), math.log(4 / 3)], rtol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reductions_and_smoothing_and_gradient(xp, eps, reduction):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
    logits = md.Tensor(xp.asarray(x), requires_grad=True)
    y = F.cross_entropy(logits, xp.asarray(t), label_smoothing=eps, reduction=reduction)
    per_row = _reference(x, t, eps)
    expected = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    y.sum().backward()
    softmax = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    q = (1 - eps) * np.eye(5)[t] + eps / 5
    scale = 1 / 6 if reduction == "mean" else 1.0
    np.testing.assert_allclose(logits.grad.numpy(), (softmax - q) * scale, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_huge_logits(xp, dtype):
    x = md.Tensor(
        xp.asarray([[1e4, 0.0, -1e4], [1e4, 1e4 - 2.0, -1e4]], dtype=dtype), requires_grad=True
    )
    y = F.cross_entropy(x, xp.asarray([1, 0]), reduction="none")
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), [1e4, math.log1p(math.exp(-2.0))], rtol=1e-6)
    y.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


@pytest.mark.parametrize(
    "x_shape,target,error,words",
    [
        ((3, 4), np.array([0, 4, 1]), ValueError, ["target", "[0, 3]", "[0, 4]"]),
        ((3, 4), np.array([0, -1, 1]), ValueError, ["target", "[-1, 1]"]),
        ((3, 4), np.array([0.0, 1.0, 2.0]), TypeError, ["target", "integer", "float64"]),
        ((3, 4), np.array([0, 1]), ValueError, ["target", "(3,)", "(2,)"]),
        ((3, 4, 2), np.array([0, 1, 2]), ValueError, ["logits", "2-D", "(3, 4, 2)"]),
    ],
)
def test_bad_input(x_shape, target, error, words):
    with pytest.raises(error) as info:
        F.cross_entropy(md.tensor(np.zeros(x_shape)), target)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(md.tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="avg")
