"""The heart of every deep-learning program: one training step.

``train_step`` is the five lines (forward, loss, zero the gradients, backward, optimizer step),
written once here and used by ``fit`` (``run.py``), ``python googlenet.py train`` and the lessons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import backend
from ..backend import get_array_module
from ..ops.loss import check_target_values
from ..tensor import Tensor

LossFn = Callable[[Any, Tensor], Tensor]


def train_step(
    model: Any, loss_fn: LossFn, optimizer: Any, x: Tensor, y: Tensor
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
