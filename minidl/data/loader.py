"""DataLoader: shuffled mini-batches from an in-memory image dataset, transformed per batch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor
from .transforms import ToFloat


class DataLoader:
    """Yields ``(images, labels)``: float32 Tensors (B, C, H, W) and int64 Tensors (B,).

    ``dataset`` exposes ``data`` (N, H, W, C) uint8 and ``targets`` (N,) (like ``CIFAR10``), or
    is a pair of such arrays. Per batch: gather the (shuffled) indices, move the uint8 batch to
    ``device`` in one copy (4x smaller than float32), view it as NCHW, apply ``transform(x,
    rng)`` there (batch-level, see ``minidl.data.transforms``); a batch still uint8 afterwards
    is scaled to 0..1 float32 (``ToFloat``).

    ``seed`` fixes the shuffling and the augmentation: two loaders with the same seed yield the
    same batches, epoch after epoch. Without a seed each run differs.

    ``epoch``: the pass the next iteration is, counted from 0 and advanced by each; a
    ``per_image`` transform (``AlternatingHorizontalFlip``) gets it with the batch's indices.
    ``set_epoch(e)`` sets it (PyTorch's ``DistributedSampler.set_epoch``), as a resumed run does.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Callable[..., Any] | None = None,
        device: str = "cpu",
    ):
        if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
            images, labels = dataset
        elif hasattr(dataset, "data") and hasattr(dataset, "targets"):
            images, labels = dataset.data, dataset.targets
        else:
            raise TypeError(
                "dataset must have .data (N, H, W, C) and .targets (N,) arrays (like CIFAR10) or "
                f"be a pair (images, labels); got {type(dataset).__name__}"
            )
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"dataset images must be (N, H, W, C) with one label each, got images "
                f"{images.shape} and labels {labels.shape}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.images, self.labels = dataset, images, labels.astype(np.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform = transform
        self.device = backend.check_device(device)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next iteration is pass ``epoch`` (0-based)."""
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"set_epoch: epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def _batch_of(self, indices: np.ndarray, epoch: int) -> dict[str, Any]:
        """What a ``per_image`` transform is told of a batch besides its images."""
        per_image = getattr(self.transform, "per_image", False)
        return {"indices": indices, "epoch": epoch} if per_image else {}

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.images)
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        rng = np.random.default_rng(self.rng.integers(2**63))  # this epoch's augmentation
        epoch, self.epoch = self.epoch, self.epoch + 1
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.shuffle:
                idx = np.sort(idx)  # the batch is a set: gather in memory order (faster)
            x = backend.to_device(self.images[idx], self.device).transpose(0, 3, 1, 2)
            y = backend.to_device(self.labels[idx], self.device)
            if self.transform is not None:
                x = self.transform(x, rng, **self._batch_of(idx, epoch))
            if x.dtype == np.uint8:
                x = ToFloat()(x)
            yield Tensor(x), Tensor(y)
