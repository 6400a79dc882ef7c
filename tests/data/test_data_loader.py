"""DataLoader batching and shuffling; batch transforms against per-image reference loops."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import backend
from minidl.data import (
    AlternatingHorizontalFlip,
    Compose,
    Cutout,
    DataLoader,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    ToFloat,
    cifar10_train_transform,
)
from minidl.data.transforms import CIFAR10_MEAN, CIFAR10_STD


def _images(n=10, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8)


def _dataset(n=23):
    """(images NHWC, labels) where image i is filled with i, so a batch tells its indices."""
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 3))
    return np.ascontiguousarray(images), np.arange(n)


def test_batches_shapes_and_order():
    loader = DataLoader(_dataset(), batch_size=5)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    x, y = batches[0]
    assert x.shape == (5, 3, 4, 4) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x.numpy()[:, 0, 0, 0], np.arange(5) / 255, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), np.arange(23))
    assert batches[-1][1].shape == (3,)
    dropped = DataLoader(_dataset(), batch_size=5, drop_last=True)
    assert len(dropped) == len(list(dropped)) == 4


def test_shuffle_is_a_permutation_reproducible_by_seed():
    def epochs(seed):
        loader = DataLoader(_dataset(), batch_size=4, shuffle=True, seed=seed)
        return [np.concatenate([y.numpy() for _, y in loader]) for _ in range(2)]

    a, b = epochs(3), epochs(3)
    for e in range(2):
        np.testing.assert_array_equal(a[e], b[e])
        assert sorted(a[e]) == list(range(23))
    assert not np.array_equal(a[0], a[1])  # each epoch reshuffles
    assert not np.array_equal(a[0], epochs(4)[0])
    assert not np.array_equal(a[0], np.arange(23))


def test_labels_follow_their_images():
    loader = DataLoader(_dataset(), batch_size=4, shuffle=True, seed=0)
    for x, y in loader:
        np.testing.assert_allclose(x.numpy()[:, 1, 2, 3] * 255, y.numpy(), atol=1e-4)


def test_augmentation_reproducible_with_seed():
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    data = (images, np.zeros(40, np.int64))

    def first_epoch(seed):
        loader = DataLoader(data, 16, shuffle=True, seed=seed, transform=cifar10_train_transform(8))
        return np.concatenate([x.numpy() for x, _ in loader])

    np.testing.assert_array_equal(first_epoch(1), first_epoch(1))
    assert not np.array_equal(first_epoch(1), first_epoch(2))


def test_accepts_dataset_objects_and_rejects_others():
    class Holder:
        data, targets = _dataset()

    assert len(DataLoader(Holder(), batch_size=10)) == 3
    with pytest.raises(TypeError, match="targets"):
        DataLoader([1, 2, 3], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Holder(), batch_size=0)


def test_random_crop_matches_a_per_image_loop(xp):
    x = _images()
    got = backend.to_numpy(RandomCrop(4, padding=2)(xp.asarray(x), np.random.default_rng(5)))
    rng = np.random.default_rng(5)
    oy, ox = rng.integers(0, 6 + 4 - 4 + 1, 10), rng.integers(0, 5 + 4 - 4 + 1, 10)
    for i in range(10):
        padded = np.pad(x[i], ((0, 0), (2, 2), (2, 2)))  # zero padding
        np.testing.assert_array_equal(got[i], padded[:, oy[i] : oy[i] + 4, ox[i] : ox[i] + 4])
    assert got.dtype == np.uint8
    same = RandomCrop(6, padding=0)(_images(h=6, w=6), np.random.default_rng(0))
    np.testing.assert_array_equal(same, _images(h=6, w=6))


def test_random_flip_matches_a_per_image_loop(xp):
    x = _images(n=50)
    got = backend.to_numpy(RandomHorizontalFlip()(xp.asarray(x), np.random.default_rng(2)))
    flip = np.random.default_rng(2).random(50) < 0.5
    assert 0 < flip.sum() < 50
    for i in range(50):
        np.testing.assert_array_equal(got[i], x[i, :, :, ::-1] if flip[i] else x[i])


def test_to_float_and_normalize(xp):
    x = _images()
    f = ToFloat()(xp.asarray(x))
    assert f.dtype == np.float32 and f.flags.c_contiguous
    np.testing.assert_allclose(backend.to_numpy(f), x / 255, rtol=1e-6)
    got = backend.to_numpy(Normalize()(f))
    mean, std = np.array(CIFAR10_MEAN)[:, None, None], np.array(CIFAR10_STD)[:, None, None]
    np.testing.assert_allclose(got, (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="ToFloat"):
        Normalize()(x)


def test_cutout_matches_a_per_image_loop(xp):
    x = np.ones((20, 2, 8, 8), np.float32)
    got = backend.to_numpy(Cutout(4)(xp.asarray(x), np.random.default_rng(9)))
    rng = np.random.default_rng(9)
    cy, cx = rng.integers(0, 8, 20), rng.integers(0, 8, 20)
    for i in range(20):
        want = np.ones((8, 8), np.float32)
        want[max(cy[i] - 2, 0) : cy[i] + 2, max(cx[i] - 2, 0) : cx[i] + 2] = 0
        np.testing.assert_array_equal(got[i, 0], want)
        np.testing.assert_array_equal(got[i, 1], want)


def test_compose_passes_the_generator_along():
    x = _images(n=8, h=8, w=8)
    pipeline = Compose([RandomCrop(8, 2), RandomHorizontalFlip(), ToFloat(), Normalize()])
    a = pipeline(x, np.random.default_rng(0))
    b = pipeline(x, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 3, 8, 8) and a.dtype == np.float32
    assert "RandomCrop(size=8, padding=2)" in repr(pipeline.transforms[0])


def _mirrored(batches, n):
    """{image index: whether the loader showed it mirrored} over one epoch of ``_asymmetric``."""
    images = _asymmetric(n)
    seen = {}
    for x, y in batches:
        for row, i in zip(np.rint(x.numpy() * 255).astype(np.uint8), y.numpy()):
            plain, flipped = images[i].transpose(2, 0, 1), images[i].transpose(2, 0, 1)[..., ::-1]
            assert (row == plain).all() != (row == flipped).all()  # one or the other
            seen[int(i)] = bool((row == flipped).all())
    return seen


def _asymmetric(n):
    """(N, 4, 4, 3) images, each different from its mirror image."""
    images = np.random.default_rng(7).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    images[:, :, 0] = 0
    images[:, :, -1] = 255
    return images


def test_alternating_flip_mirrors_each_image_on_every_other_epoch(device):
    n = 40
    loader = DataLoader(
        (_asymmetric(n), np.arange(n)), batch_size=6, shuffle=True, seed=1,
        transform=Compose([AlternatingHorizontalFlip(n, seed=3)]), device=device,
    )  # fmt: skip
    epochs = [_mirrored(loader, n) for _ in range(4)]
    assert all(sorted(e) == list(range(n)) for e in epochs)  # every image, every epoch
    first = np.array([epochs[0][i] for i in range(n)])
    assert 10 < first.sum() < 30  # a random half first
    for k, epoch in enumerate(epochs):
        np.testing.assert_array_equal([epoch[i] for i in range(n)], first ^ bool(k % 2))
    again = AlternatingHorizontalFlip(n, seed=3)  # the same seed: the same images first
    np.testing.assert_array_equal(again._first, first)
    assert not np.array_equal(AlternatingHorizontalFlip(n, seed=4)._first, first)


def test_set_epoch_sets_the_pass_a_per_image_transform_sees():
    n = 12
    flip = AlternatingHorizontalFlip(n, seed=0)
    loader = DataLoader((_asymmetric(n), np.arange(n)), 5, transform=Compose([flip]))
    assert loader.epoch == 0
    first = _mirrored(loader, n)
    assert loader.epoch == 1
    loader.set_epoch(6)  # an even epoch shows what epoch 0 did
    assert _mirrored(loader, n) == first and loader.epoch == 7
    loader.set_epoch(3)
    assert _mirrored(loader, n) == {i: not m for i, m in first.items()}
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        loader.set_epoch(-1)


def test_alternating_flip_refuses_a_call_without_the_batch():
    flip = AlternatingHorizontalFlip(5)
    x = _images(n=3)
    with pytest.raises(TypeError, match="indices and the epoch"):
        flip(x, np.random.default_rng(0))
    with pytest.raises(TypeError, match="indices and the epoch"):
        Compose([flip])(x, np.random.default_rng(0))
    with pytest.raises(ValueError, match="2 indices for a batch of 3"):
        flip(x, indices=np.arange(2), epoch=0)
    with pytest.raises(IndexError, match=r"in 0\.\.4, got 3\.\.5"):
        flip(x, indices=np.arange(3, 6), epoch=0)
    with pytest.raises(ValueError, match="images must be a positive int, got 0"):
        AlternatingHorizontalFlip(0)


def test_train_transform_takes_a_flip_step():
    flip = AlternatingHorizontalFlip(8)
    pipeline = cifar10_train_transform(flip=flip)
    assert pipeline.transforms[1] is flip and pipeline.per_image
    assert not cifar10_train_transform().per_image
    assert isinstance(cifar10_train_transform().transforms[1], RandomHorizontalFlip)
