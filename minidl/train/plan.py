"""What ``fit`` is told beyond the model, the data and the optimizer, in two small objects.

- ``RunFiles``: where a run keeps its files and what it continues from: the ``out`` folder
  (metrics, curves, ``last.npz``/``best.npz``), what else its checkpoints carry, and a checkpoint
  to resume.
- ``RunPlan``: how the run goes, beyond its number of epochs: a time budget, small crops first,
  a final test pass (with test-time augmentation), a pause after some epochs, the moment its
  wall time counts from, and a running average of the weights.

Without either, ``fit`` writes nothing and runs its epochs at full size, as ``fit_simple`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evaluation import Shift
from .protocols import Averaged, Batches


@dataclass(frozen=True)
class RunFiles:
    """Where a run writes and what it continues from.

    ``out``: the folder for ``metrics.csv``, ``metrics.json``, ``curves.png`` and the
    checkpoints ``last.npz`` (every epoch) and ``best.npz`` (a new best test accuracy), made if
    missing; None writes nothing. ``checkpoint_extra``: saved in every checkpoint beside the
    training state (the CLI keeps the model's configuration there). ``resume``: a checkpoint
    ``fit`` wrote (``minidl.train.checkpoint.read_checkpoint``); the run continues where it
    stopped."""

    out: str | os.PathLike | None = None
    checkpoint_extra: Mapping[str, Any] | None = None
    resume: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunPlan:
    """How a run goes, beyond its number of epochs (each field's default: as ``fit_simple``).

    ``time_budget_s``: the run ends within that many seconds of wall time, its schedule
    completed (``budget.py``; the epochs are then only the plan the schedule was built for).
    ``low_res``: ``(share, transform)``, progressive resizing: the first ``share`` of the run
    trains on ``transform``'s smaller crops (``progressive.py``). ``final_test_loader``:
    evaluated once more when the run ends (the whole test set, while ``test_loader`` is a cheap
    subset); ``final_tta``: that pass with test-time augmentation too (True: ``TTA_SHIFTS``, or
    the shifts to use). ``stop_after_epochs``: return after that many epochs of this call (resume
    to go on). ``start_time``: the ``time.perf_counter()`` the wall time counts from (default:
    when ``fit`` is called; the CLI passes its own start, so loading the data counts).
    ``averaged``: a running average of the model's weights
    (``minidl.optim.swa_utils.AveragedModel``), updated after every step, kept in the
    checkpoints (``averaged``) and evaluated beside the model at every epoch's end (the row's
    ``averaged_test_loss`` and ``averaged_test_acc``)."""

    time_budget_s: float | None = None
    low_res: tuple[float, Callable[..., Any]] | None = None
    final_test_loader: Batches | None = None
    final_tta: bool | Sequence[Shift] = False
    stop_after_epochs: int | None = None
    start_time: float | None = None
    averaged: Averaged | None = None
