"""Normalization: batch_norm and local_response_norm.

Batch normalization (Ioffe & Szegedy 2015), per channel c over the batch and spatial axes
(m = N*H*W values each):

    mean_c = (1/m) sum x,   var_c = (1/m) sum (x - mean_c)^2      (biased, used to normalise)
    xhat = (x - mean_c) / sqrt(var_c + eps),   y = gamma_c * xhat + beta_c

In training the batch statistics are used and the running ones updated in place, as PyTorch:
running_mean = (1 - momentum) running_mean + momentum mean_c, and likewise running_var with the
*unbiased* variance var_c * m / (m - 1). In eval the running statistics normalise instead.

Backward in training mode (mean and var depend on x; the classic closed form):

    dbeta = sum gy,   dgamma = sum gy * xhat,
    dx = gamma / sqrt(var + eps) * (gy - dbeta / m - xhat * dgamma / m)

In eval mode mean and var are constants: dx = gy * gamma / sqrt(running_var + eps).

Local response normalization (Krizhevsky et al. 2012; used in GoogLeNet's stem) divides each
activation by a power of the energy of its ``size`` neighbouring channels:

    y_c = x_c / (k + alpha / size * sum_{c' in window(c)} x_{c'}^2) ^ beta

with the window c - size//2 ... c + (size-1)//2, clipped to the valid channels.

Convention: like PyTorch (and Caffe, whose LRN layer GoogLeNet used), ``alpha`` is divided by
``size``. The AlexNet paper's formula, TensorFlow's ``tf.nn.lrn`` and Chainer's
``local_response_normalization`` use alpha *undivided* (k + alpha * sum): an alpha taken from those
must be multiplied by ``size`` here. (TensorFlow also counts ``depth_radius`` = size // 2.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ..backend import device_of, get_array_module, to_device
from ..function import Function
from ..registry import GradCase, register_gradcheck
from ..tensor import Tensor
from .dispatch import fast_path
from .layout import check_float
from .shape import channel_slots, concat_slots, transpose


def _raw(a):
    """The backend array of a running-statistics buffer (a Tensor or an array)."""
    from ..tensor import Tensor

    return a.data if isinstance(a, Tensor) else a


class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel (axis 1); see module docstring.

    Works for (N, C) and (N, C, H, W) inputs (any strides). The running statistics are plain
    (non-differentiable) arrays updated in place. ``relu=True`` applies max(y, 0) in the same
    pass (backward first masks gy with y > 0). ``out`` (an array of x's shape and dtype) receives
    y instead of a new array: a model can have y written straight into its slice of a
    concatenation (``minidl.nn._fused``). Channels-last NumPy data goes through
    ``cpu.batchnorm_nhwc`` (the same formulas, cache-blocked and threaded); the code below is the
    reference path every other input takes.
    """

    def __init__(
        self,
        running_mean=None,
        running_var=None,
        training=False,
        momentum=0.1,
        eps=1e-5,
        relu=False,
        out=None,
    ):
        self.running_mean, self.running_var = _raw(running_mean), _raw(running_var)
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu
        self.out = out

    def forward(self, x, gamma=None, beta=None):
        check_float(x, "x", "batch_norm")
        if x.ndim < 2:
            raise ValueError(f"batch_norm: x must be at least 2-D (N, C, ...), got shape {x.shape}")
        xp = get_array_module(x)
        C = x.shape[1]
        for name, a in (
            ("weight", gamma),
            ("bias", beta),
            ("running_mean", self.running_mean),
            ("running_var", self.running_var),
        ):
            if a is not None and tuple(a.shape) != (C,):
                raise ValueError(
                    f"batch_norm: {name} must have shape ({C},) for x of shape {tuple(x.shape)}, "
                    f"got {tuple(a.shape)}"
                )
            if a is not None and device_of(a) != device_of(x):
                raise ValueError(
                    f"batch_norm: {name} must be on x's device {device_of(x)!r}, got "
                    f"{device_of(a)!r}; move it with .to(device) (as PyTorch requires)"
                )
        out = self.out
        if out is not None and (
            tuple(out.shape) != tuple(x.shape) or out.dtype != x.dtype or type(out) is not type(x)
        ):
            raise ValueError(
                f"batch_norm: out must be an array like x ({type(x).__name__} of shape "
                f"{tuple(x.shape)}, {x.dtype}), got {type(out).__name__} of shape "
                f"{tuple(out.shape)}, {out.dtype}"
            )
        m = x.size // C
        # the one dispatch: the cache-blocked path for channels-last NumPy data (out too, when
        # given), else the textbook
        self.fast = (
            fast_path(x, "batchnorm_nhwc")
            if out is None or fast_path(out, "batchnorm_nhwc")
            else None
        )
        path = self.fast or textbook_path
        if self.training:
            if m < 2:
                raise ValueError(
                    f"batch_norm: training needs more than 1 value per channel, got x of shape "
                    f"{tuple(x.shape)}"
                )
            mean, var = (a.astype(x.dtype, copy=False) for a in path.statistics(x))
            # running = (1 - momentum) * running + momentum * statistic (the variance unbiased);
            # each update is three array operations, in place, casting where dtypes differ
            if self.running_mean is not None:
                self.running_mean *= 1 - self.momentum
                self.running_mean += self.momentum * mean
            if self.running_var is not None:
                self.running_var *= 1 - self.momentum
                self.running_var += (self.momentum * m / (m - 1)) * var
        else:
            if self.running_mean is None or self.running_var is None:
                raise ValueError(
                    "batch_norm: eval mode (training=False) needs running_mean and "
                    "running_var, got None"
                )
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        invstd = (1 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        scale = invstd if gamma is None else gamma * invstd
        shift = -mean * scale if beta is None else beta - mean * scale
        y = path.affine(x, scale, shift, self.relu, out)
        self.out = None  # y is out: kept below as self.y when needed
        self.x, self.mean, self.invstd, self.scale = x, mean, invstd, scale
        self.y = y if self.relu else None  # the fused ReLU's mask is y > 0
        self.path = path
        return y

    def backward(self, gy):
        need = self.needs_input_grad + (False, False)  # (x, gamma, beta); affine may be absent
        gx, dgamma, dbeta = self.path.backward(
            gy, self.x, self.y, self.mean, self.invstd, self.scale, self.training, self.relu
        )
        return gx if need[0] else None, dgamma if need[1] else None, dbeta if need[2] else None


# ---------------------------------------------------------------- the textbook batch norm
# The three steps BatchNorm takes, written as the formulas in the module docstring; the
# cache-blocked path (cpu.batchnorm_nhwc) has the same three functions, for channels-last NumPy
# data.


def _channel_axes(x) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes a channel's statistics run over (all but 1), and a channel vector's shape that
    broadcasts against x: (0, 2, 3) and (1, C, 1, 1) for NCHW."""
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def statistics(x):
    """Per-channel mean and biased variance of ``x`` over all but axis 1."""
    axes, bshape = _channel_axes(x)
    mean = x.mean(axis=axes)
    return mean, get_array_module(x).square(x - mean.reshape(bshape)).mean(axis=axes)


def affine(x, scale, shift, relu: bool, out=None):
    """y = x * scale + shift per channel (then max(y, 0) with ``relu``): one pass over x,
    into ``out`` when given (which is returned)."""
    _, bshape = _channel_axes(x)
    y = get_array_module(x).multiply(x, scale.reshape(bshape), out=out)
    y += shift.reshape(bshape)
    if relu:
        get_array_module(y).maximum(y, 0, out=y)
    return y


def backward(gy, x, y, mean, invstd, scale, training: bool, relu: bool):
    """(dx, dgamma, dbeta) of y = [relu](x * scale + shift); ``y`` is only read with ``relu``."""
    axes, bshape = _channel_axes(x)
    m = x.size // x.shape[1]
    if relu:
        gy = gy * (y > 0)  # through the fused ReLU first
    dbeta = gy.sum(axis=axes)
    xhat = (x - mean.reshape(bshape)) * invstd.reshape(bshape)
    dgamma = (gy * xhat).sum(axis=axes)
    if training:
        gx = gy - (dbeta / m).reshape(bshape)
        gx -= xhat * (dgamma / m).reshape(bshape)
        gx *= scale.reshape(bshape)
    else:
        gx = gy * scale.reshape(bshape)
    return gx, dgamma, dbeta


textbook_path = SimpleNamespace(statistics=statistics, affine=affine, backward=backward)


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """PyTorch's F.batch_norm; ``running_mean``/``running_var`` (arrays or tensors, or None in
    training) are updated in place when ``training``."""
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, False)


def batch_norm_relu(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    out: Any = None,
) -> Tensor:
    """``relu(batch_norm(...))`` as one op: one pass over memory instead of two, the same values;
    written into the array ``out`` (x's shape and dtype) when given.

    Not in ``F`` (PyTorch has no such function): the layers reach it through
    ``minidl.nn._fused``, which also does the modules' bookkeeping."""
    return _batch_norm(
        x, running_mean, running_var, weight, bias, training, momentum, eps, True, out
    )


def _batch_norm(
    x, running_mean, running_var, weight, bias, training, momentum, eps, relu, out=None
):
    if isinstance(momentum, bool) or not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum!r}")
    if eps <= 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps!r}")
    f = BatchNorm(running_mean, running_var, training, momentum, eps, relu, out)
    if weight is None and bias is None:
        return f(x)
    if weight is None or bias is None:
        raise ValueError("batch_norm: give both weight and bias, or neither")
    return f(x, weight, bias)


def _channel_window_sum(a, lo, hi):
    """s[:, c] = sum of a[:, c + d] for d in [-lo, hi], channels outside [0, C) skipped."""
    s = a.copy()
    C = a.shape[1]
    for d in range(1, max(lo, hi) + 1):
        if d <= lo and d < C:
            s[:, d:] += a[:, : C - d]
        if d <= hi and d < C:
            s[:, : C - d] += a[:, d:]
    return s


class LocalResponseNorm(Function):
    """y_c = x_c * s_c^-beta, s_c = k + alpha/size * sum_{c' in window(c)} x_{c'}^2.

    dx_c = gy_c s_c^-beta
           - (2 alpha beta / size) x_c sum_{c': c in window(c')} gy_c' x_c' s_c'^(-beta-1)

    (the window of c' contains c exactly when c' lies in the mirrored window c - (size-1)//2 ...
    c + size//2).
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"local_response_norm: size must be a positive int, got {size!r}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        check_float(x, "x", "local_response_norm")
        if x.ndim < 3:
            raise ValueError(
                f"local_response_norm: x must be at least 3-D (N, C, ...), got shape {x.shape}"
            )
        n = self.size
        s = _channel_window_sum(x * x, n // 2, (n - 1) // 2)
        s *= self.alpha / n
        s += self.k
        self.x, self.s = x, s
        return x * s ** (-self.beta)

    def backward(self, gy):
        n, x, s = self.size, self.x, self.s
        t = gy * x * s ** (-self.beta - 1)
        back = _channel_window_sum(t, (n - 1) // 2, n // 2)
        return gy * s ** (-self.beta) - (2 * self.alpha * self.beta / n) * x * back


def local_response_norm(
    x: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> Tensor:
    """PyTorch's F.local_response_norm across channels (alpha divided by size; see module doc)."""
    return LocalResponseNorm(size, alpha, beta, k)(x)


@register_gradcheck("batch_norm")
def _bn_cases(rng):
    def r(*shape):
        return rng.standard_normal(shape)

    def train(x, g, b):
        return batch_norm(x, None, None, g, b, training=True)

    def on_device(x):  # the running statistics, where x lives (as in PyTorch)
        return to_device(rm, device_of(x.data)), to_device(rv, device_of(x.data))

    def evaluate(x, g, b):
        mean, var = on_device(x)
        return batch_norm(x, mean, var, g, b, training=False)

    rm, rv = r(3), rng.uniform(0.5, 2, 3)
    yield GradCase("train 4-D, gamma, beta", train, [r(2, 3, 2, 3), r(3), r(3)])
    yield GradCase("train 2-D, gamma, beta", train, [r(4, 3), r(3), r(3)])
    yield GradCase(
        "train, no affine", lambda x: batch_norm(x, None, None, training=True), [r(3, 2, 2, 2)]
    )
    yield GradCase("eval 4-D, gamma, beta", evaluate, [r(2, 3, 2, 2), r(3), r(3)])
    yield GradCase("train (directional)", train, [r(4, 3, 6, 6), r(3), r(3)])

    # channels-last input (an NHWC array viewed as NCHW) takes the cache-blocked path
    def cl(x):
        return transpose(x, 0, 3, 1, 2)

    def evaluate_relu_cl(x, g, b):
        mean, var = on_device(x)
        return batch_norm_relu(cl(x), mean, var, g, b)

    yield GradCase(
        "train channels-last, relu",
        lambda x, g, b: batch_norm_relu(cl(x), None, None, g, b, training=True),
        [r(3, 4, 5, 3), r(3), r(3)],
        eps=1e-5,  # dx sums to ~0 per channel: a larger step keeps rounding below its small entries
    )
    yield GradCase(
        "train channels-last",
        lambda x, g, b: batch_norm(cl(x), None, None, g, b, training=True),
        [r(4, 3, 2, 4), r(4), r(4)],
    )
    yield GradCase("eval channels-last, relu", evaluate_relu_cl, [r(2, 2, 2, 3), r(3), r(3)])

    def into_concatenation(x, g, b, c):  # y written into its slice; c copied beside it
        slots = channel_slots(c.data, [3, 2])
        y = batch_norm_relu(cl(x), None, None, g, b, training=True, out=slots[1][0])
        return concat_slots([y, c], slots)

    yield GradCase(
        "train channels-last, relu, out= a slice of concat_slots",
        into_concatenation,
        [r(3, 4, 5, 3), r(3), r(3), r(3, 2, 4, 5)],
        eps=1e-5,
    )
    yield GradCase(
        "train NCHW, relu",
        lambda x, g, b: batch_norm_relu(x, None, None, g, b, training=True),
        [r(2, 3, 3, 2), r(3), r(3)],
    )


@register_gradcheck("local_response_norm")
def _lrn_cases(rng):
    yield GradCase(
        "size 5",
        lambda x: local_response_norm(x, 5, alpha=0.1, beta=0.75, k=2.0),
        [rng.standard_normal((2, 7, 2, 2))],
    )
    yield GradCase(
        "size 4 (even)",
        lambda x: local_response_norm(x, 4, alpha=0.5, beta=0.6),
        [rng.standard_normal((1, 6, 3, 2))],
    )
    yield GradCase(
        "size 3, 3-D",
        lambda x: local_response_norm(x, 3, alpha=0.3),
        [rng.standard_normal((2, 5, 4))],
    )
