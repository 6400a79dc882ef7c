"""The heart of every deep-learning program: one training step, and the loop around it.

``train_step`` is the five lines (forward, loss, zero the gradients, backward, optimizer step),
written once here and used by ``fit`` (``run.py``), ``python googlenet.py train`` and the lessons.
``fit_simple`` is the training loop a learner reads: epochs of that step, the learning-rate
schedule stepped after every batch, a test pass after each epoch. ``fit`` is the same loop with
the chores a long run needs (progress bar, files, checkpoints, resume, Ctrl-C, a time budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import backend
from ..backend import get_array_module
from ..ops.loss import check_target_values
from ..tensor import Tensor
from .evaluation import evaluate
from .protocols import Batches, Model, Optimizer, Schedule

LossFn = Callable[[Any, Tensor], Tensor]


def train_step(
    model: Model, loss_fn: LossFn, optimizer: Optimizer, x: Tensor, y: Tensor
) -> tuple[float, int]:
    """One step on the batch ``(x, y)``; returns the batch's mean loss and correct predictions."""
    output = model(x)  # forward: the graph is recorded
    loss = loss_fn(output, y)
    optimizer.zero_grad()  # gradients accumulate, so clear the last step's first
    loss.backward()  # every parameter's .grad
    optimizer.step()  # p -= lr * (momentum-smoothed gradient + weight decay * p)
    logits = output if isinstance(output, Tensor) else output[0]
    correct = (logits.data.argmax(axis=1) == y.data).sum()
    # the step's one read-back (on a GPU, its one synchronisation): loss and count together
    xp = get_array_module(loss.data)
    loss_value, n_correct = backend.to_numpy(xp.stack([loss.data, correct.astype(loss.dtype)]))
    if not math.isfinite(loss_value):  # bad targets make a NaN loss on a GPU: say so clearly
        check_target_values(y.data, logits.shape[1])
    return float(loss_value), int(n_correct)


def fit_simple(
    model: Model,
    loss_fn: LossFn,
    train_loader: Batches,
    optimizer: Optimizer,
    epochs: int,
    schedule: Schedule | None = None,
    test_loader: Batches | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` passes over ``train_loader``; one row per epoch, printed
    and returned: the mean training loss and accuracy, with ``test_loader`` the test's too."""
    rows = []
    for epoch in range(1, epochs + 1):
        model.train()  # dropout on; batch norm normalises with the batch's statistics
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in train_loader:
            loss, right = train_step(model, loss_fn, optimizer, x, y)
            if schedule is not None:
                schedule.step()  # the learning rate for the next batch
            loss_sum, correct, seen = loss_sum + loss * len(y), correct + right, seen + len(y)
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_acc": correct / seen}
        if test_loader is not None:
            test = evaluate(model, test_loader)  # eval mode, no graph
            row["test_loss"], row["test_acc"] = test.loss, test.accuracy
        print(", ".join(f"{key} {value:.4g}" for key, value in row.items()))
        rows.append(row)
    return rows
