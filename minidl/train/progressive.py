"""Progressive resizing: the first part of a run trains on smaller images, the rest on full ones.

A convolutional network's step costs about its pixels: at 24x24 a CIFAR GoogLeNet step took 0.53
of a 32x32 one (measured, width 0.25, batch 128). A network that ends in a global average pool
takes any size, so the early, high-learning-rate part of a run can see smaller crops, more of
them in the same minutes, and the later part the full images the test uses, which adapts the
weights (and the batch-norm statistics) to them. ``RunPlan(low_res=(share, transform))`` sets this
up; ``SmallImagesFirst`` is its switch.

What a small step saves depends on the device: on a CPU the time follows the pixels, on a GPU a
small model's step is bound by kernel launches and hardly shrinks. So a budgeted run times both
sizes (its first ``PROBE_STEPS`` steps at full size, then the small ones) and counts a small step
at the measured ratio of the two; and the switch to full size happens once: a plan that grows
again after it (the full steps ran faster than estimated) never sends the run back to small ones.

Batch norm's running statistics follow the batches trained on: after small crops they are small
crops' statistics, and a full-size test pass with them scored 4-9 points below the same weights
with statistics of full-size training images as the test sees them (records/recipe.md, "Small
crops and batch norm"). So an evaluation while the run is still on small crops first recomputes
them over ``RECALIBRATION_IMAGES`` training images through the test's transform, the same ones
every time (``full_size_batches``; ``fit`` runs ``update_bn`` with the dropout off, so the
training goes on as without it). Once on full images the running statistics are kept: there
the recomputed ones scored 0.6-1.7 points lower.
"""

from __future__ import annotations

import itertools
import statistics
from collections import deque
from collections.abc import Callable
from typing import Any

from ..data import DataLoader

PROBE_STEPS = 3  # full-size steps timed first (the first step is slow: the median of three)
WINDOW = 5  # the latest step times kept per size
# training images batch norm's statistics are recomputed over before an evaluation on small
# crops (~2% of an epoch): after epoch 2 of 6cf2a39's run, 70.55% on the test subset with 1,024
# of them, 70.95% with 2,560, 61.40% with the small crops' statistics
RECALIBRATION_IMAGES = 1024


class SmallImagesFirst:
    """Swaps ``loader.transform``: ``small`` while the run's fraction done is below ``share``,
    the loader's own transform after, for good. ``probe_steps``: the run's first steps are at
    full size, to time them. ``cost(x)``: a step on batch ``x`` relative to a step on full
    images, measured once ``observe`` has seen both sizes, else their pixels over full ones' (a
    time budget counts the small steps at that cost).

    ``loader``: a ``minidl.data.DataLoader`` (its ``transform`` is read for every batch, so a
    swap takes effect at the next batch drawn).
    """

    def __init__(self, loader: Any, share: float, small: Callable[..., Any], probe_steps: int = 0):
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
        self.probe_steps, self.switched = probe_steps, False
        self.times: dict[bool, deque[float]] = {
            True: deque(maxlen=WINDOW),
            False: deque(maxlen=WINDOW),
        }

    def choose(self, fraction: float, done: int = 0) -> None:
        """The transform for the next batch drawn, ``done`` steps and ``fraction`` of the run
        done: full size while probing, small below ``share``, full from then on."""
        small = not self.switched and done >= self.probe_steps and fraction < self.share
        self.switched = self.switched or (done >= self.probe_steps and not small)
        self.loader.transform = self.small if small else self.full

    def _is_full(self, x: Any) -> bool:
        return x.shape[-2] * x.shape[-1] == self.full_pixels

    def observe(self, x: Any, seconds: float) -> None:
        """A step on batch ``x`` took ``seconds``."""
        self.times[self._is_full(x)].append(seconds)

    def cost(self, x: Any) -> float:
        if self._is_full(x):
            return 1.0
        if self.times[True] and self.times[False]:  # both sizes timed: what a step really costs
            return statistics.median(self.times[False]) / statistics.median(self.times[True])
        return x.shape[-2] * x.shape[-1] / self.full_pixels

    def on_small(self) -> bool:
        """Whether the next batch drawn is small (the run is still on small crops)."""
        return self.loader.transform is self.small

    def full_size_batches(self, transform: Any, images: int = RECALIBRATION_IMAGES) -> Any:
        """The first ``images`` (whole batches) of the training set, shuffled with a fixed
        seed, at full size through ``transform`` (the test's): the same batches every call,
        drawn apart from the loader's own random numbers."""
        loader = self.loader
        whole = len(loader.images) >= loader.batch_size  # (then no batch of one image)
        batches = DataLoader(
            (loader.images, loader.labels), loader.batch_size, shuffle=True, seed=0,
            transform=transform, device=loader.device, drop_last=whole,
        )  # fmt: skip
        return itertools.islice(batches, -(-images // loader.batch_size))

    def restore(self) -> None:
        self.loader.transform = self.full
