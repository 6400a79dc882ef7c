"""Test passes: a model's loss and accuracy over a loader, plain or with test-time augmentation.

Test-time augmentation (TTA) shows the model each test image as several views that training's
augmentation could have produced (mirrored, and the crop window moved by a pixel) and averages
the class probabilities of the views. ``TTA_SHIFTS`` with mirrors gives six views; measured on
two CIFAR-10 runs of ``python googlenet.py train`` it added 0.30 and 0.56 points over mirrors
alone (records/recipe.md, "Test-time augmentation: which views").
"""

from __future__ import annotations

import time
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
    the mean. Costs ``2 * len(shifts)`` passes over ``loader`` (the ``(0, 0)`` view is the plain
    one), which must give its images in the same order every pass (no shuffling)."""
    plain, augmented, _ = evaluate_tta_within(model, loader, shifts, deadline=None)
    return plain, augmented


def evaluate_tta_within(
    model: Model, loader: Batches, shifts: Sequence[Shift], deadline: float | None
) -> tuple[Evaluation, Evaluation, int]:
    """``evaluate_tta`` by a ``deadline`` (a ``time.perf_counter()``, or None for none):
    ``(plain, augmented, views)``. A shift's views that would end past the deadline, at the
    pace of the last view, are not started; ``views`` says how many were averaged (1 when only
    the plain one was: then ``augmented`` is the plain figures)."""
    shifts = tuple(shifts)
    pairs = all(len(s) == 2 and all(isinstance(d, int) for d in s) for s in shifts)
    if not (shifts and pairs):
        raise TypeError(f"evaluate_tta: shifts must be (dy, dx) int pairs, got {shifts!r}")
    plain, augmented, views = _test_passes(model, loader, shifts, deadline)
    assert augmented is not None  # there are shifts
    return plain, augmented, views


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
    model: Model, loader: Batches, shifts: tuple[Shift, ...], deadline: float | None = None
) -> tuple[Evaluation, Evaluation | None, int]:
    """The plain pass, and with ``shifts`` the augmented one and its views (see
    ``evaluate_tta_within``): one pass over ``loader`` per view, view after view, so that a
    ``deadline`` can end the augmentation between them."""
    model.eval()
    with no_grad():
        tick = time.perf_counter()
        targets, plain, logits = _plain_pass(model, loader)
        if not shifts:
            return plain, None, 1
        fill = padding_fill(loader) if any(s != (0, 0) for s in shifts) else 0.0
        first = ((0, 0),) if (0, 0) in shifts else ()  # its unmirrored view is the plain pass
        probs = softmax(Tensor(logits), axis=1).numpy().astype(np.float64) if first else 0.0
        views, view_s = (1 if first else 0), time.perf_counter() - tick
        for shift in first + tuple(s for s in shifts if s != (0, 0)):
            mirrors = (True,) if shift == (0, 0) else (False, True)
            if (
                deadline is not None
                and views
                and time.perf_counter() + len(mirrors) * view_s > deadline
            ):
                break  # they would end past the deadline (at the last view's pace)
            tick = time.perf_counter()
            for mirror in mirrors:
                probs = probs + _view_probs(model, loader, shift, mirror, fill, targets)
            views, view_s = views + len(mirrors), (time.perf_counter() - tick) / len(mirrors)
    assert isinstance(probs, np.ndarray)  # at least one view was summed
    probs = probs / views
    picked = probs[np.arange(len(targets)), targets]
    loss = -float(np.log(np.maximum(picked, 1e-30)).mean())
    predictions = probs.argmax(axis=1)
    accuracy = float((predictions == targets).mean())
    return plain, Evaluation(loss, accuracy, targets, predictions), views


def _plain_pass(model: Model, loader: Batches) -> tuple[np.ndarray, Evaluation, np.ndarray]:
    """Every image once, as it is: (targets, its evaluation, the logits (N, classes))."""
    targets, loss_sum, logits = [], 0.0, []
    for x, y in loader:
        out, t = model(x), y.numpy()
        targets.append(t)
        loss_sum += cross_entropy(out, y).item() * len(t)
        logits.append(out.numpy())
    all_targets, all_logits = np.concatenate(targets), np.concatenate(logits)
    predictions = all_logits.argmax(axis=1)
    accuracy = float((predictions == all_targets).mean())
    evaluation = Evaluation(loss_sum / len(all_targets), accuracy, all_targets, predictions)
    return all_targets, evaluation, all_logits


def _view_probs(
    model: Model, loader: Batches, shift: Shift, mirror: bool, fill: Any, targets: np.ndarray
) -> np.ndarray:
    """Class probabilities (N, classes) of every image seen through the window moved by
    ``shift``, mirrored or not; ``targets``: the plain pass's, to check the order is the same."""
    probs, seen = [], []
    for x, y in loader:
        xp = backend.get_array_module(x.data)
        view = x.data if shift == (0, 0) else shifted(x.data, *shift, fill)
        if mirror:
            view = xp.ascontiguousarray(view[..., ::-1])
        probs.append(softmax(model(Tensor(view)), axis=1).numpy().astype(np.float64))
        seen.append(y.numpy())
    if not np.array_equal(np.concatenate(seen), targets):
        raise ValueError(
            "evaluate_tta: the loader gave its images in another order on a second pass "
            "(shuffle=True?); test-time augmentation needs the same order every pass"
        )
    return np.concatenate(probs)
