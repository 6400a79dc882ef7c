"""Batch transforms: each acts on a whole batch x (N, C, H, W) at once, with no per-image loop.

A transform is called as ``t(x, rng)``: ``x`` a NumPy or CuPy array (uint8 or float), ``rng`` a
NumPy Generator. Random choices (offsets, flips, squares) are drawn on the host with ``rng``, one
vector per batch, and applied with the batch's own array module, so a seed gives the same
augmentation on the CPU and on the GPU. A transform whose ``per_image`` is True also needs to know
which images the batch holds and the epoch: the DataLoader calls it as ``t(x, rng,
indices=..., epoch=...)`` (``AlternatingHorizontalFlip``). The usual CIFAR-10 training pipeline is
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
    """Apply transforms in order, passing the same generator along (and the batch's ``indices``
    and ``epoch`` to those that are ``per_image``)."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    @property
    def per_image(self) -> bool:
        return any(getattr(t, "per_image", False) for t in self.transforms)

    def __call__(self, x: Any, rng: np.random.Generator | None = None, **batch: Any) -> Any:
        rng = np.random.default_rng() if rng is None else rng
        for t in self.transforms:
            x = t(x, rng, **batch) if getattr(t, "per_image", False) else t(x, rng)
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
        return _mirror(x, rng.random(len(x)) < self.p)


def _mirror(x: Any, flip: np.ndarray) -> Any:
    """The batch ``x`` (N, C, H, W) with the images where ``flip`` (N,) is True mirrored."""
    xp = get_array_module(x)
    return xp.where(xp.asarray(flip)[:, None, None, None], x[..., ::-1], x)


class AlternatingHorizontalFlip(Transform):
    """Mirror each image on every other epoch: in epoch 0 a random half of the ``images``
    (drawn once from ``seed``), in each later epoch exactly those the epoch before did not.

    Random flipping can show an image the same way several epochs running; alternating shows
    both sides equally in any two epochs, which helps most in short runs (Jordan 2024, "94% on
    CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498, alternating flip). It needs to
    know which images a batch holds: a DataLoader passes ``indices`` (B,) into the data set and
    the ``epoch`` (``per_image``).
    """

    per_image = True

    def __init__(self, images: int, seed: int = 0):
        if not isinstance(images, int) or images < 1:
            raise ValueError(
                f"AlternatingHorizontalFlip: images must be a positive int, got {images!r}"
            )
        self.images, self.seed = images, seed
        self._first = np.random.default_rng(seed).random(images) < 0.5  # epoch 0's choice

    def __call__(
        self,
        x: Any,
        rng: np.random.Generator | None = None,
        *,
        indices: Any = None,
        epoch: int | None = None,
    ) -> Any:
        if indices is None or epoch is None:
            raise TypeError(
                "AlternatingHorizontalFlip needs the batch's image indices and the epoch "
                "(t(x, rng, indices=..., epoch=...), as a minidl DataLoader calls it)"
            )
        indices = np.asarray(indices)
        if len(indices) != len(x):
            raise ValueError(
                f"AlternatingHorizontalFlip: {len(indices)} indices for a batch of {len(x)} images"
            )
        if len(indices) and (indices.min() < 0 or indices.max() >= self.images):
            raise IndexError(
                f"AlternatingHorizontalFlip: indices must be in 0..{self.images - 1}, got "
                f"{indices.min()}..{indices.max()}"
            )
        return _mirror(x, self._first[indices] ^ bool(epoch % 2))

    def __repr__(self) -> str:
        return f"AlternatingHorizontalFlip(images={self.images}, seed={self.seed})"


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


def cifar10_train_transform(
    cutout: int = 0, size: int = 32, flip: Transform | None = None
) -> Compose:
    """Crop 32 with padding 4, horizontal flip, scale to 0..1, normalise; optional cutout.

    ``size`` < 32: smaller crops (progressive resizing's early phase), padded less so that the
    windows still shift by up to 4 pixels each way: 24 is a crop of the unpadded image.
    ``flip``: the flip step, ``RandomHorizontalFlip()`` unless given (e.g. an
    ``AlternatingHorizontalFlip``, which the small and the full crops' transforms can share)."""
    if not 8 <= size <= 32:
        raise ValueError(f"cifar10_train_transform: size must be in 8..32, got {size}")
    padding = max(0, 4 - (32 - size) // 2)
    flip = RandomHorizontalFlip() if flip is None else flip
    steps: list[Transform] = [RandomCrop(size, padding), flip, ToFloat()]
    steps.append(Normalize())
    if cutout:
        steps.append(Cutout(cutout))
    return Compose(steps)


def cifar10_test_transform() -> Compose:
    """Scale to 0..1 and normalise (no augmentation)."""
    return Compose([ToFloat(), Normalize()])
