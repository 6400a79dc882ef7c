"""Cross-entropy loss, fused with log-softmax (PyTorch's F.cross_entropy).

For logits x (N, K) and integer targets t (N,), with log p = log_softmax(x) computed stably as
z - log sum exp z, z = x - max_k x (so logits of magnitude 1e4 neither overflow nor lose the
answer), and label smoothing eps spreading eps of the target mass uniformly over the K classes:

    q_i = (1 - eps) onehot(t_i) + eps / K
    loss_i = -sum_k q_ik log p_ik

reduction "mean" averages loss_i over the batch, "sum" adds them, "none" returns the (N,) vector.

A target outside [0, K) raises ValueError on the CPU. On a GPU, asking would read a boolean back
(a synchronisation every step), so there the row's loss becomes NaN instead and nothing is read
(PyTorch stops at a device-side assert); ``minidl.train.train_step`` turns a NaN loss from bad
targets into the same ValueError.

Fusing the two steps gives the famous gradient  dloss_i/dx_i = softmax(x_i) - q_i  (times the
upstream gradient, and 1/N for "mean"): no division by p, so no trouble when p underflows to 0.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


class CrossEntropy(Function):
    """loss = -sum_k q_k log softmax(x)_k per row; dx = (softmax(x) - q) * upstream."""

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        self.eps, self.reduction = label_smoothing, reduction

    def forward(self, x, t):
        xp = get_array_module(x)
        _check_targets(x, t)
        N, K = x.shape
        bad = None
        if xp is np:  # free on the host; on a device a read-back would synchronise every step
            check_target_values(t, K)
        else:  # gather a valid class for a bad row, then make that row NaN
            bad = (t < 0) | (t >= K)
            t = xp.where(bad, 0, t)
        z = x - x.max(axis=1, keepdims=True)
        logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
        rows = xp.arange(N)
        loss = -(1 - self.eps) * logp[rows, t]
        if self.eps:
            loss -= self.eps / K * logp.sum(axis=1)
        if bad is not None:  # a bad target's row is NaN (see the module docstring)
            loss = xp.where(bad, xp.nan, loss)
        self.logp, self.t = logp, t
        if self.reduction == "none":
            return loss
        total = loss.sum()
        return (total / N if self.reduction == "mean" else total).astype(x.dtype)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, K = self.logp.shape
        g = xp.exp(self.logp)  # softmax
        g[xp.arange(N), self.t] -= 1 - self.eps
        if self.eps:
            g -= self.eps / K
        if self.reduction == "none":
            g *= gy[:, None]
        else:
            g *= gy / N if self.reduction == "mean" else gy
        return g, None


def _check_targets(x, t):
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, K), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating point, got dtype {x.dtype}")
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class indices, got dtype {t.dtype}"
        )
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"cross_entropy: target must have shape ({x.shape[0]},) to match the batch of logits "
            f"{tuple(x.shape)}, got {tuple(t.shape)}"
        )


def check_target_values(t, num_classes: int) -> None:
    """Raise ValueError unless every target is a class index in [0, num_classes) (on a device,
    this reads values back: a synchronisation)."""
    if t.size and bool(((t < 0) | (t >= num_classes)).any()):
        raise ValueError(
            f"cross_entropy: target values must be class indices in [0, {num_classes - 1}], got "
            f"values in [{int(t.min())}, {int(t.max())}]"
        )


def cross_entropy(
    logits: Tensor, target: Tensor, label_smoothing: float = 0.0, reduction: str = "mean"
) -> Tensor:
    """PyTorch's F.cross_entropy for logits (N, K) and integer targets (N,)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
        )
    if not 0 <= label_smoothing <= 1:
        raise ValueError(
            f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}"
        )
    return CrossEntropy(label_smoothing, reduction)(logits, target)


@register_gradcheck("cross_entropy")
def _ce_cases(rng):
    t = rng.integers(0, 5, size=4)
    x = rng.standard_normal((4, 5)) * 2
    yield GradCase("mean", cross_entropy, [x, t], tol=1e-5)
    yield GradCase("sum, smoothing 0.1", lambda a, b: cross_entropy(a, b, 0.1, "sum"), [x, t])
    yield GradCase("none, smoothing 0.2", lambda a, b: cross_entropy(a, b, 0.2, "none"), [x, t])
