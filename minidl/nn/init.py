"""Weight initialisation, in place on a Tensor's data (PyTorch's ``torch.nn.init``).

The random numbers are drawn on the host by a NumPy Generator (``manual_seed`` resets it, or pass
``generator=``) and then copied into the tensor with its own array module, so the same seed gives
the same weights on the CPU and on the GPU. Every function returns the tensor.

Fans of a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out *
prod(kernel). Gains (``calculate_gain``): linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
leaky_relu sqrt(2 / (1 + a^2)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import get_array_module, to_numpy
from ..tensor import Tensor

Generator = np.random.Generator | None  # None: the module's generator (see manual_seed)

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reseed the generator used when no ``generator=`` is given."""
    global _generator
    _generator = np.random.default_rng(seed)


def _rng(generator: Generator) -> np.random.Generator:
    return _generator if generator is None else generator


def _fill(t: Tensor, values: Any) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"init functions take a Tensor, got {type(t).__name__}")
    xp = get_array_module(t.data)
    t.data[...] = xp.asarray(values, dtype=t.dtype)
    return t


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for an activation (see the module docstring)."""
    if nonlinearity in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(
        f"nonlinearity must be linear, sigmoid, tanh, relu or leaky_relu, got {nonlinearity!r}"
    )


def calculate_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape (out, in, *kernel); needs at least 2 dimensions."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor with >= 2 dimensions, got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: tuple[int, ...], mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fans(shape)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, generator: Generator = None) -> Tensor:
    """U(a, b)."""
    return _fill(t, _rng(generator).uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, generator: Generator = None) -> Tensor:
    """N(mean, std^2)."""
    return _fill(t, _rng(generator).normal(mean, std, t.shape))


def trunc_normal_(
    t: Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: Generator = None,
) -> Tensor:
    """N(mean, std^2) restricted to [a, b] (absolute bounds, as PyTorch), by redrawing outliers."""
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    rng = _rng(generator)
    values = rng.normal(mean, std, t.shape)
    bad = (values < a) | (values > b)
    while bad.any():
        values[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (values < a) | (values > b)
    return _fill(t, values)


def constant_(t: Tensor, value: float) -> Tensor:
    return _fill(t, value)


def zeros_(t: Tensor) -> Tensor:
    return _fill(t, 0)


def ones_(t: Tensor) -> Tensor:
    return _fill(t, 1)


def xavier_uniform_(t: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    """Glorot: U(-bound, bound), bound = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fans(t.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, generator)


def xavier_normal_(t: Tensor, gain: float = 1.0, generator: Generator = None) -> Tensor:
    """Glorot: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fans(t.shape)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def kaiming_uniform_(
    t: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Generator = None,
) -> Tensor:
    """He: U(-bound, bound), bound = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a).

    PyTorch's default for Linear and Conv2d weights is ``a=sqrt(5)``, which gives
    bound = 1 / sqrt(fan_in).
    """
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / _fan(t.shape, mode))
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(
    t: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: Generator = None,
) -> Tensor:
    """He: N(0, std^2), std = gain / sqrt(fan); ``mode="fan_out", nonlinearity="relu"`` is the
    usual choice for ReLU convolution stacks (torchvision's ResNet)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(t.shape, mode))
    return normal_(t, 0.0, std, generator)


def patch_whitening_(t: Tensor, images: Any, eps: float = 5e-4) -> Tensor:
    """A first convolution's weight (O, C, kh, kw) set from the data: it whitens image patches.

    ``images`` (N, C, H, W) are the network's inputs as it sees them (normalised), N a few
    thousand. Every kh x kw patch of them is a vector p of d = C*kh*kw values; with the patches'
    covariance S = sum_i lambda_i v_i v_i^T (lambda_1 >= lambda_2 >= ...), output channels 2i and
    2i+1 get the filters +v_i / sqrt(lambda_i + eps) and -v_i / sqrt(lambda_i + eps): the O/2
    strongest directions of the patches, each scaled to unit variance, in both signs so that a
    following ReLU keeps both halves. Jordan (2024, arXiv:2404.00498, after tysam-code's
    hlb-CIFAR10) found this initialisation of the first layer the largest single gain of its fast
    CIFAR-10 recipe. O must be even and at most 2d.
    """
    if len(t.shape) != 4:
        raise ValueError(
            f"patch_whitening_: weight must be 4-D (out, in, kh, kw), got shape {tuple(t.shape)}"
        )
    O, C, kh, kw = t.shape
    d = C * kh * kw
    if O % 2 or O > 2 * d:
        raise ValueError(
            f"patch_whitening_: weight's out channels must be even and at most 2 * in * kh * kw "
            f"= {2 * d} (a + and a - filter per direction), got {O} (weight {tuple(t.shape)})"
        )
    x = to_numpy(images)
    if x.ndim != 4 or x.shape[1] != C or x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(
            f"patch_whitening_: images must be (N, {C}, H >= {kh}, W >= {kw}) for weight "
            f"{tuple(t.shape)}, got shape {tuple(x.shape)}"
        )
    total, outer, count = np.zeros(d), np.zeros((d, d)), 0
    for lo in range(0, len(x), 256):  # 256 images at a time: patches are kh*kw times the images
        windows = np.lib.stride_tricks.sliding_window_view(x[lo : lo + 256], (kh, kw), (2, 3))
        p = windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, d).astype(np.float64)  # (c, u, v)
        total += p.sum(axis=0)
        outer += p.T @ p
        count += len(p)
    mean = total / count
    eigenvalues, eigenvectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    top = slice(-1, -1 - O // 2, -1)  # eigh sorts ascending: the last O/2, strongest first
    filters = eigenvectors[:, top].T / np.sqrt(np.maximum(eigenvalues[top], 0) + eps)[:, None]
    weight = np.stack([filters, -filters], axis=1).reshape(O, C, kh, kw)  # +v_i, -v_i, ...
    return _fill(t, weight)
