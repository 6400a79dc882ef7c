"""Test passes: a model's loss and accuracy over a loader, plain or with test-time augmentation.

Test-time augmentation (TTA) shows the model each test image as several views that training's
augmentation could have produced (mirrored, and the crop window moved by a pixel) and averages
the class probabilities of the views. ``TTA_SHIFTS`` with mirrors gives six views; measured on
two CIFAR-10 runs of ``python googlenet.py train`` it added 0.30 and 0.56 points over mirrors
alone (records/recipe.md, "Test-time augmentation: which views").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..function import no_grad
from ..ops.activation import softmax
from ..ops.loss import cross_entropy
from ..tensor import Tensor
from .protocols import Batches, Model

Shift = tuple[int, int]  # (dy, dx): the crop window moved down by dy and right by dx pixels
TTA_SHIFTS: tuple[Shift, ...] = ((0, 0), (1, 1), (-1, -1))  # each also mirrored: six views


def views_per_image(shifts: Sequence[Shift]) -> int:
    """Forward passes per test image: two per shift (as is and mirrored), one without any."""
    return 2 * len(shifts) if shifts else 1


class Evaluation(NamedTuple):
    loss: float  # mean cross-entropy
    accuracy: float
    targets: np.ndarray
    predictions: np.ndarray


def evaluate(model: Model, loader: Batches) -> Evaluation:
    """Mean loss, accuracy, targets and predictions of ``model`` (in eval mode, no graph
    recorded) over ``loader``'s batches."""
    return _test_passes(model, loader, ())[0]


def evaluate_flipped(model: Model, loader: Batches) -> tuple[Evaluation, Evaluation]:
    """``(plain, flipped)``: ``evaluate``'s figures, and those of each image's class
    probabilities averaged with its mirror image's (``evaluate_tta`` with no shift)."""
    return evaluate_tta(model, loader, shifts=((0, 0),))


def evaluate_tta(
    model: Model, loader: Batches, shifts: Sequence[Shift] = TTA_SHIFTS
) -> tuple[Evaluation, Evaluation]:
    """``(plain, augmented)``: ``evaluate``'s figures, and those of test-time augmentation:
    each image's class probabilities are the mean over ``2 * len(shifts)`` views, the image
    seen through a window moved by each ``(dy, dx)`` in ``shifts`` (``shifted``), as is and
    mirrored, as training's crop and flip show it. Loss, accuracy and predictions are those of
    the mean. Costs ``2 * len(shifts)`` forward passes (the ``(0, 0)`` view is the plain one)."""
    shifts = tuple(shifts)
    pairs = all(len(s) == 2 and all(isinstance(d, int) for d in s) for s in shifts)
    if not (shifts and pairs):
        raise TypeError(f"evaluate_tta: shifts must be (dy, dx) int pairs, got {shifts!r}")
    plain, augmented = _test_passes(model, loader, shifts)
    assert augmented is not None  # there are shifts
    return plain, augmented


def shifted(x: Any, dy: int, dx: int, fill: Any = 0.0) -> Any:
    """The batch ``x`` (N, C, H, W) seen through a window moved by ``(dy, dx)`` pixels:
    ``out[..., i, j] = x[..., i + dy, j + dx]``, and ``fill`` (a scalar, or per channel (C,))
    where the window leaves the image, as training's padded crop fills it."""
    xp = backend.get_array_module(x)
    h, w = x.shape[-2:]
    out = xp.empty_like(x)
    out[...] = xp.asarray(fill, dtype=x.dtype).reshape(-1, 1, 1)  # a scalar, or per channel
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[:, :, yd, xd] = x[:, :, ys, xs]
    return out


def padding_fill(loader: Any) -> Any:
    """What a black pixel (uint8 zeros, RandomCrop's padding) becomes after ``loader``'s
    transform, per channel (C,): the fill of a shifted view. 0.0 for a loader without one."""
    transform = getattr(loader, "transform", None)
    images = getattr(loader, "images", None)
    if transform is None or images is None:
        return 0.0
    black = np.zeros((1, *images.shape[1:]), dtype=images.dtype).transpose(0, 3, 1, 2)
    x = transform(black, np.random.default_rng(0))
    return backend.to_numpy(x)[0, :, 0, 0].astype(np.float64) / (255 if x.dtype == np.uint8 else 1)


def _test_passes(
    model: Model, loader: Batches, shifts: tuple[Shift, ...]
) -> tuple[Evaluation, Evaluation | None]:
    """The plain pass, and with ``shifts`` the augmented one (see ``evaluate_tta``)."""
    model.eval()
    fill = padding_fill(loader) if any(s != (0, 0) for s in shifts) else 0.0
    targets: list = []
    plain: tuple[list, list] = ([], [])  # per batch: summed loss, predictions
    augmented: tuple[list, list] = ([], [])
    with no_grad():
        for x, y in loader:
            logits, t = model(x), y.numpy()
            targets.append(t)
            plain[0].append(cross_entropy(logits, y).item() * len(t))
            plain[1].append(logits.numpy().argmax(axis=1))
            if not shifts:
                continue
            xp = backend.get_array_module(x.data)
            probs: np.ndarray | float = 0.0  # summed over the views
            for dy, dx in shifts:
                view = x.data if (dy, dx) == (0, 0) else shifted(x.data, dy, dx, fill)
                for mirror in (False, True):
                    if not mirror and (dy, dx) == (0, 0):
                        out = logits  # the plain pass's
                    else:
                        v = xp.ascontiguousarray(view[..., ::-1]) if mirror else view
                        out = model(Tensor(v))
                    probs = probs + softmax(out, axis=1).numpy()
            assert isinstance(probs, np.ndarray)  # there are shifts: views were summed
            probs = probs / views_per_image(shifts)
            picked = probs[np.arange(len(t)), t]
            augmented[0].append(-float(np.log(np.maximum(picked, 1e-30)).sum()))
            augmented[1].append(probs.argmax(axis=1))
    all_targets = np.concatenate(targets)

    def result(loss_sums: list, predictions: list) -> Evaluation:
        p = np.concatenate(predictions)
        n = len(all_targets)
        return Evaluation(sum(loss_sums) / n, float((all_targets == p).mean()), all_targets, p)

    return result(*plain), (result(*augmented) if shifts else None)
