"""Progressive resizing: the first part of a run trains on smaller images, the rest on full ones.

A convolutional network's step costs about its pixels: at 24x24 a CIFAR GoogLeNet step took 0.53
of a 32x32 one (measured, width 0.25, batch 128). A network that ends in a global average pool
takes any size, so the early, high-learning-rate part of a run can see smaller crops, more of
them in the same minutes, and the later part the full images the test uses, which adapts the
weights (and the batch-norm statistics) to them. ``fit(low_res=(share, transform))`` sets this
up; ``SmallImagesFirst`` is its switch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SmallImagesFirst:
    """Swaps ``loader.transform``: ``small`` while the run's fraction done is below ``share``,
    the loader's own transform after. ``cost(x)``: a step on batch ``x`` relative to a step on
    full images, its pixels over theirs (a time budget counts the small steps at that cost).

    ``loader``: a ``minidl.data.DataLoader`` (its ``transform`` is read for every batch, so a
    swap takes effect at the next batch drawn).
    """

    def __init__(self, loader: Any, share: float, small: Callable[..., Any]):
        if not 0 < share <= 1:
            raise ValueError(f"low_res: share must be in (0, 1], got {share!r}")
        if not hasattr(loader, "transform") or not hasattr(loader, "images"):
            raise TypeError(
                f"low_res needs a minidl.data.DataLoader (.transform, .images), got "
                f"{type(loader).__name__}"
            )
        self.loader, self.share, self.small = loader, share, small
        self.full = loader.transform
        height, width = loader.images.shape[1:3]  # (N, H, W, C)
        self.full_pixels = height * width

    def choose(self, fraction: float) -> None:
        """The transform for the next batch drawn, the run being ``fraction`` done."""
        self.loader.transform = self.small if fraction < self.share else self.full

    def cost(self, x: Any) -> float:
        return x.shape[-2] * x.shape[-1] / self.full_pixels

    def restore(self) -> None:
        self.loader.transform = self.full
