"""Test passes (minidl.train.evaluation): shifted views against a naive loop, the six-view test-time
augmentation against probabilities averaged by hand, the padding a view gets."""

from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl import nn
from minidl.data import DataLoader, cifar10_test_transform
from minidl.data.transforms import CIFAR10_MEAN, CIFAR10_STD
from minidl.train import evaluation
from minidl.train.evaluation import (
    TTA_SHIFTS,
    evaluate,
    evaluate_flipped,
    evaluate_tta,
    evaluate_tta_within,
    padding_fill,
    shifted,
)


def naive_shift(x, dy, dx, fill):
    """out[n, c, i, j] = x[n, c, i + dy, j + dx] where that pixel exists, fill[c] elsewhere."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    inside = 0 <= i + dy < h and 0 <= j + dx < w
                    out[b, ch, i, j] = x[b, ch, i + dy, j + dx] if inside else fill[ch]
    return out


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 1), (-1, -1), (2, -1), (0, 3), (-3, 0)])
def test_shifted_moves_the_window_and_fills_what_it_leaves(xp, rng, dy, dx):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    fill = np.array([-1.5, 0.25, 7.0])
    out = shifted(xp.asarray(x), dy, dx, fill)
    assert md.backend.get_array_module(out) is xp
    np.testing.assert_array_equal(md.backend.to_numpy(out), naive_shift(x, dy, dx, fill))


def test_a_shifted_view_is_padded_with_a_black_pixel_after_the_loaders_transform():
    data = np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64)
    fill = padding_fill(DataLoader(data, 2, transform=cifar10_test_transform()))
    expected = -np.array(CIFAR10_MEAN) / np.array(CIFAR10_STD)  # black, normalised
    np.testing.assert_allclose(fill, expected, rtol=1e-6)
    assert padding_fill(DataLoader(data, 2)) == 0.0  # uint8 -> 0..1: black stays 0


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("shifts", [TTA_SHIFTS, ((0, 0),), ((2, -1),)])
def test_evaluate_tta_averages_the_probabilities_of_every_view(xp, device, shifts):
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 4))  # no symmetry: every view counts
    model.to(device)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8), rng.integers(0, 4, 12)
    loader = DataLoader(data, 5, transform=cifar10_test_transform(), device=device)
    plain, result = evaluate_tta(model, loader, shifts)

    x = (data[0].transpose(0, 3, 1, 2) / 255 - np.array(CIFAR10_MEAN)[:, None, None]) / np.array(
        CIFAR10_STD
    )[:, None, None]
    black = -np.array(CIFAR10_MEAN) / np.array(CIFAR10_STD)
    model.eval()

    def probs(view):
        logits = model(md.Tensor(xp.asarray(view.astype(np.float32))))
        return softmax(md.backend.to_numpy(logits.data).astype(np.float64))

    views = [naive_shift(x, dy, dx, black) for dy, dx in shifts]
    mean = sum(probs(v) + probs(v[..., ::-1]) for v in views) / (2 * len(shifts))
    y = data[1]
    np.testing.assert_array_equal(result.predictions, mean.argmax(axis=1))
    assert result.accuracy == pytest.approx(np.mean(mean.argmax(axis=1) == y))
    assert result.loss == pytest.approx(-np.log(mean[np.arange(len(y)), y]).mean(), rel=1e-4)
    assert not np.allclose(mean, probs(x), atol=1e-3)  # the other views did count
    for a, b in zip(plain, evaluate(model, loader)):  # the plain pass, on the way
        np.testing.assert_array_equal(a, b)


def test_evaluate_flipped_is_the_mirror_pair_alone():
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 4))
    pixels = np.random.default_rng(4).integers(0, 256, (6, 8, 8, 3)).astype(np.uint8)
    data = pixels, np.arange(6) % 4
    loader = DataLoader(data, 4, transform=cifar10_test_transform())
    for a, b in zip(evaluate_flipped(model, loader), evaluate_tta(model, loader, ((0, 0),))):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_evaluate_tta_runs_one_forward_pass_per_view():
    calls = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8 * 8 * 3, 4)

        def forward(self, x):
            calls.append(x.shape[0])
            return self.linear(x.reshape(x.shape[0], -1))

    data = np.zeros((10, 8, 8, 3), np.uint8), np.zeros(10, np.int64)
    evaluate_tta(Counting(), DataLoader(data, 5), TTA_SHIFTS)
    assert len(calls) == 2 * 2 * len(TTA_SHIFTS)  # two batches, six views each (plain reused)


class Clock:
    """time.perf_counter for minidl.train.evaluation, moved on by the model it wraps."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(evaluation, "time", self)

    def perf_counter(self):
        return self.now


@pytest.mark.parametrize("deadline, views", [(1.5, 1), (3.5, 2), (5.5, 4), (6.0, 6), (None, 6)])
def test_evaluate_tta_starts_no_view_that_would_end_past_its_deadline(monkeypatch, deadline, views):
    """Each view costs 1 s (two batches, 0.5 s each): a shift's views are started only when
    they end by the deadline at the last view's pace; the result is the views done, averaged."""
    clock = Clock(monkeypatch)
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 3, 5))

    def timed(x):
        clock.now += 0.5
        return model(x)

    timed.eval = model.eval  # (what evaluate_tta needs of a model)
    data = np.random.default_rng(0).random((6, 4, 4, 3)).astype(np.float32), np.arange(6) % 5
    loader = DataLoader(data, 3)
    plain, augmented, done_views = evaluate_tta_within(timed, loader, TTA_SHIFTS, deadline)
    assert done_views == views and clock.now == views  # one second a view
    done = TTA_SHIFTS[: views // 2] or ((0, 0),)
    expected = evaluate_tta(model, loader, done)[1] if views > 1 else plain
    np.testing.assert_allclose(augmented.loss, expected.loss, rtol=1e-6)
    np.testing.assert_array_equal(augmented.predictions, expected.predictions)


def test_evaluate_tta_names_a_loader_that_shuffles():
    data = np.random.default_rng(0).random((8, 4, 4, 3)).astype(np.float32), np.arange(8) % 4
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 3, 4))
    with pytest.raises(ValueError, match="another order on a second pass"):
        evaluate_tta(model, DataLoader(data, 4, shuffle=True, seed=0), ((0, 0),))


def test_evaluate_tta_names_a_bad_shift():
    data = np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.int64)
    expected = r"shifts must be \(dy, dx\) int pairs, got \(\(0.5, 0\),\)"
    with pytest.raises(TypeError, match=expected):
        evaluate_tta(nn.Flatten(), DataLoader(data, 2), ((0.5, 0),))
    with pytest.raises(TypeError, match=r"int pairs, got \(\)"):
        evaluate_tta(nn.Flatten(), DataLoader(data, 2), ())
