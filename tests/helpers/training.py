"""A tiny training run (model, optimizer, schedule, loaders on learnable 8x8 images) and a fake
clock, for the tests of minidl.train."""

from __future__ import annotations

import numpy as np

import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader, RandomHorizontalFlip
from minidl.train import run as training

EPOCHS, BATCH = 3, 8  # 32 training images: 4 batches per epoch


def images(n, seed):
    """Learnable 8x8 images: the class (of 4) sets the mean colour of the image."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    data = rng.integers(0, 30, (n, 8, 8, 3)) + (labels * 60)[:, None, None, None]
    return data.astype(np.uint8), labels


def make_run(seed=0):
    """Model (conv, batch norm, dropout: every kind of state), optimizer, schedule, loaders."""
    nn.init.manual_seed(seed)
    np.random.seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(6, 4),
    )
    optimizer = optim.SGD(list(model.parameters()), lr=0.2, momentum=0.9, nesterov=True)
    loader = DataLoader(
        images(32, 1), BATCH, shuffle=True, drop_last=True, seed=seed,
        transform=RandomHorizontalFlip(),
    )  # fmt: skip
    schedule = optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.2, total_steps=EPOCHS * len(loader)
    )
    return model, optimizer, schedule, loader, DataLoader(images(24, 2), 10)


def loss_fn(output, y):
    return F.cross_entropy(output, y)


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


TIMINGS = ("time_s", "images_per_s", "final_test_s")  # the wall clock's: never bit for bit


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


class FakeClock:
    """time.perf_counter for minidl.train.run: a train_step takes exactly one second."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(training, "time", self)
        step = training.train_step

        def one_second_step(*args):
            self.now += 1.0
            return step(*args)

        monkeypatch.setattr(training, "train_step", one_second_step)

    def perf_counter(self):
        return self.now
