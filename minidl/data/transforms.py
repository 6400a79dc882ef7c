"""Batch transforms: each acts on a whole batch x (N, C, H, W) at once, with no per-image loop.

A transform is called as ``t(x, rng)``: ``x`` a NumPy or CuPy array (uint8 or float), ``rng`` a
NumPy Generator. Random choices (offsets, flips, squares) are drawn on the host with ``rng``, one
vector per batch, and applied with the batch's own array module, so a seed gives the same
augmentation on the CPU and on the GPU. The usual CIFAR-10 training pipeline is
``Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToFloat(), Normalize()])``
(crop and flip on uint8, the cheapest form; see ``cifar10_train_transform``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backend import get_array_module

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Transform:
    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms in order, passing the same generator along."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        rng = np.random.default_rng() if rng is None else rng
        for t in self.transforms:
            x = t(x, rng)
        return x


class RandomCrop(Transform):
    """Zero-pad each image by ``padding`` on every side, then cut a random ``size`` x ``size``
    window (offsets uniform in 0..2*padding, one pair per image).

    Vectorised as one gather: a strided view lists every possible window of the padded batch,
    (N, C, positions_y, positions_x, size, size), and fancy indexing picks one per image.
    """

    def __init__(self, size: int, padding: int = 4):
        self.size, self.padding = size, padding

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        rng = np.random.default_rng() if rng is None else rng
        xp = get_array_module(x)
        n, c, h, w = x.shape
        p, s = self.padding, self.size
        if h + 2 * p < s or w + 2 * p < s:
            raise ValueError(f"RandomCrop({s}, padding={p}) is larger than padded images {h}x{w}")
        padded = xp.zeros((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
        padded[:, :, p : p + h, p : p + w] = x
        ny, nx = h + 2 * p - s + 1, w + 2 * p - s + 1
        oy = xp.asarray(rng.integers(0, ny, n))
        ox = xp.asarray(rng.integers(0, nx, n))
        sn, sc, sh, sw = padded.strides
        # padded is our own contiguous array, so a strided window view of it is safe on CuPy too
        windows = xp.lib.stride_tricks.as_strided(
            padded, shape=(n, c, ny, nx, s, s), strides=(sn, sc, sh, sw, sh, sw)
        )
        # advanced indices on axes 0, 2, 3 around the slice: result (N, C, s, s)
        return windows[xp.arange(n), :, oy, ox]


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        rng = np.random.default_rng() if rng is None else rng
        xp = get_array_module(x)
        flip = xp.asarray(rng.random(len(x)) < self.p)
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


class ToFloat(Transform):
    """uint8 0..255 -> float32 0..1, C-contiguous (other dtypes are only cast)."""

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        xp = get_array_module(x)
        out = xp.ascontiguousarray(x, dtype=xp.float32)
        if x.dtype == np.uint8:
            out *= 1 / 255
        return out


class Normalize(Transform):
    """(x - mean[c]) / std[c] per channel, on float input in 0..1 (defaults: CIFAR-10's)."""

    def __init__(self, mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        xp = get_array_module(x)
        if x.dtype.kind != "f":
            raise TypeError(f"Normalize needs float input (use ToFloat first), got {x.dtype}")
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channels, the batch {x.shape[1]}")
        mean = xp.asarray(self.mean, dtype=x.dtype)[:, None, None]
        scale = 1 / xp.asarray(self.std, dtype=x.dtype)[:, None, None]
        return (x - mean) * scale


class Cutout(Transform):
    """Zero a ``size`` x ``size`` square at a random centre in each image (DeVries & Taylor,
    2017); the square is clipped at the borders. Apply after Normalize, so zero is the mean."""

    def __init__(self, size: int = 16, p: float = 1.0):
        self.size, self.p = size, p

    def __call__(self, x: Any, rng: np.random.Generator | None = None) -> Any:
        rng = np.random.default_rng() if rng is None else rng
        xp = get_array_module(x)
        n, _, h, w = x.shape
        cy = xp.asarray(rng.integers(0, h, n))[:, None]
        cx = xp.asarray(rng.integers(0, w, n))[:, None]
        use = xp.asarray(rng.random(n) < self.p)[:, None]
        half = self.size // 2
        rows = (xp.arange(h) >= cy - half) & (xp.arange(h) < cy - half + self.size) & use
        cols = (xp.arange(w) >= cx - half) & (xp.arange(w) < cx - half + self.size)
        keep = ~(rows[:, :, None] & cols[:, None, :])  # (N, H, W)
        return x * keep[:, None].astype(x.dtype)


def cifar10_train_transform(cutout: int = 0, size: int = 32) -> Compose:
    """Crop 32 with padding 4, horizontal flip, scale to 0..1, normalise; optional cutout.

    ``size`` < 32: smaller crops (progressive resizing's early phase), padded less so that the
    windows still shift by up to 4 pixels each way: 24 is a crop of the unpadded image."""
    if not 8 <= size <= 32:
        raise ValueError(f"cifar10_train_transform: size must be in 8..32, got {size}")
    padding = max(0, 4 - (32 - size) // 2)
    steps: list[Transform] = [RandomCrop(size, padding), RandomHorizontalFlip(), ToFloat()]
    steps.append(Normalize())
    if cutout:
        steps.append(Cutout(cutout))
    return Compose(steps)


def cifar10_test_transform() -> Compose:
    """Scale to 0..1 and normalise (no augmentation)."""
    return Compose([ToFloat(), Normalize()])
