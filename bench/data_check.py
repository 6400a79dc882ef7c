"""Check the real CIFAR-10 and time the input pipeline (a benchmark, not a unit test).

    python bench/data_check.py [--root FOLDER] [--batch-size 128]

Asserts 50,000 training and 10,000 test images in 10 classes and a training-set channel mean of
about (125.3, 123.0, 113.9) on the 0-255 scale, then times loading and one shuffled, augmented
epoch (crop 32 with padding 4, horizontal flip, normalise, optionally cutout) without a model.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minidl.data import CIFAR10, DataLoader, cifar10_test_transform, cifar10_train_transform

# the folder `python googlenet.py train` reads (and downloads into) by default
DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "minidl", "cifar10")
EXPECTED_MEAN = (125.3, 123.0, 113.9)


def timed_epoch(loader: DataLoader) -> tuple[float, int, np.ndarray]:
    start = time.perf_counter()
    seen, total = 0, np.zeros(3)
    for x, y in loader:
        seen += len(y)
        total += x.data.mean(axis=(0, 2, 3)) * len(y)
    return time.perf_counter() - start, seen, total / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=DEFAULT_ROOT, help="folder holding cifar-10-batches-py (%(default)s)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    start = time.perf_counter()
    train = CIFAR10(args.root, train=True)
    test = CIFAR10(args.root, train=False)
    print(f"loaded {train.source} in {time.perf_counter() - start:.2f} s")
    print(f"train {train.data.shape} {train.data.dtype}, test {test.data.shape}")
    print(f"classes ({len(train.classes)}): {', '.join(train.classes)}")
    print(f"train images per class: {np.bincount(train.targets).tolist()}")
    mean = train.data.reshape(-1, 3).mean(axis=0)
    std = train.data.reshape(-1, 3).std(axis=0)
    print(f"train channel mean (0-255): {np.round(mean, 2).tolist()}  (expected ~{EXPECTED_MEAN})")
    print(f"train channel std  (0-1):   {np.round(std / 255, 4).tolist()}")
    assert len(train) == 50_000 and len(test) == 10_000, (len(train), len(test))
    assert len(train.classes) == 10 and set(np.unique(train.targets)) == set(range(10))
    assert np.allclose(mean, EXPECTED_MEAN, atol=0.1), mean

    for name, transform in [
        ("crop+flip+normalize", cifar10_train_transform()),
        ("crop+flip+normalize+cutout16", cifar10_train_transform(cutout=16)),
    ]:
        loader = DataLoader(
            train, args.batch_size, shuffle=True, seed=0, transform=transform, device=args.device
        )
        seconds, seen, batch_mean = timed_epoch(loader)
        print(
            f"train epoch, {name}: {seen} images in {len(loader)} batches, {seconds:.2f} s "
            f"({seen / seconds:,.0f} images/s); mean after normalise {np.round(batch_mean, 3)}"
        )
    loader = DataLoader(test, 500, transform=cifar10_test_transform(), device=args.device)
    seconds, seen, _ = timed_epoch(loader)
    print(f"test pass: {seen} images, {seconds:.2f} s")
    print("OK")


if __name__ == "__main__":
    main()
