"""A training run, for any model: ``fit`` runs epochs of ``train_step`` and ``evaluate``s.

``train_step`` (``loop.py``) is the five lines at the heart of every deep-learning program;
around it ``fit``, which ``python googlenet.py train`` and the lessons use, keeps the chores: a
progress bar, one metrics row per epoch (``metrics.csv``/``metrics.json``), curves, checkpoints
(``checkpoint.py``: ``last.npz`` after every epoch, ``best.npz`` at the best test
accuracy), resuming a checkpoint exactly (mid-epoch too), Ctrl-C and SIGTERM (the batch being
trained finishes, the state is saved, ``Interrupted`` is raised: a resume continues bit for bit),
and a diverging loss (``NonFiniteLoss``). With ``time_budget_s`` the run ends within its time
budget, its schedule following the fraction of the budget used (``budget.py``);
``estimate_epochs`` gives such a run a first plan. docs/training.md says what a resume reproduces.

Models whose training output is a tuple (GoogLeNet's auxiliary heads) hand it to the loss
function whole; accuracy is counted on its first entry, the main logits (torchvision's order).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any, NamedTuple

import numpy as np

from ..optim.swa_utils import update_bn
from ..tensor import Tensor
from ..viz import plot_curves
from .budget import (
    CALIBRATION_SHARE,
    EVAL_SHARE,
    FILES_S,
    FINAL_SHARE,
    WHOLE_SHARE,
    TimeBudget,
)
from .checkpoint import Position, restore_training_state, save_checkpoint, training_state
from .evaluation import TTA_SHIFTS, Shift, evaluate, evaluate_tta_within, views_per_image
from .loop import LossFn, train_step
from .metrics import write_metrics
from .plan import RunFiles, RunPlan
from .progressive import PROBE_STEPS, SmallImagesFirst
from .protocols import Averaged, Batches, Loader, Model, Optimizer, Schedule


class Step(NamedTuple):
    """What ``fit`` hands ``on_step`` after each step."""

    epoch: int  # from 0
    batch: int  # from 0, within the epoch
    step: int  # steps since the run began, this one included
    loss: float  # the batch's mean loss
    correct: int
    size: int  # images in the batch
    lr: float  # the learning rate the step used (first parameter group)
    tested: bool = False  # one test batch was evaluated after it too (timed for the budget)


class FitResult(NamedTuple):
    rows: list[dict[str, Any]]  # one per epoch, as in metrics.json
    best_acc: float
    checkpoint: str | None  # last.npz, when ``fit`` was given a folder
    finished: bool  # False: stopped early (plan.stop_after_epochs, on_step); resume to go on
    elapsed_s: float  # wall time of the run, earlier sessions included


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM during ``fit``.

    The first one is deferred to the end of the batch being trained, where the run's state is
    saved (``saved`` True): resuming ``checkpoint`` continues at ``epoch``, ``batch`` (both from 0)
    exactly as if nothing had happened. A second Ctrl-C stops at once, inside the batch, and
    saves nothing of it (``saved`` False): ``checkpoint`` is then the last one this call wrote
    (None if none), at ``epoch``, ``batch``. ``signal`` names the signal: "SIGINT" or "SIGTERM".
    """

    def __init__(
        self,
        checkpoint: str | None,
        epoch: int,
        batch: int,
        signal: str = "SIGINT",
        saved: bool = True,
    ):
        super().__init__(checkpoint, epoch, batch)
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch
        self.signal, self.saved = signal, saved


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite at ``epoch``, ``batch`` (from 0); nothing of that
    epoch was saved: ``checkpoint`` is the last good one this call wrote (None if none)."""

    def __init__(self, loss: float, epoch: int, batch: int, lr: float, checkpoint: str | None):
        where = f"the training loss is {loss} at batch {batch + 1} of epoch {epoch + 1}"
        super().__init__(
            f"{where} (learning rate {lr:g}): training diverged; lower the learning rate. "
            + (f"The last good checkpoint is {checkpoint}" if checkpoint else "Nothing was saved")
        )
        self.loss, self.epoch, self.batch, self.checkpoint = loss, epoch, batch, checkpoint


def fit(
    model: Model,
    loss_fn: LossFn,
    train_loader: Loader,
    optimizer: Optimizer,
    epochs: int,
    *,
    schedule: Schedule | None = None,
    test_loader: Batches | None = None,
    files: RunFiles | None = None,
    plan: RunPlan | None = None,
    on_step: Callable[[Step], bool | None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` (a ``minidl.data.DataLoader``).

    ``loss_fn(output, y)``: the loss of the model's training output. ``schedule`` is stepped
    after every batch, at most ``epochs * len(train_loader) - 1`` times (the last step's rate is
    never used). After each epoch: evaluate on ``test_loader`` (when given), print a line, and
    with ``files`` (``RunFiles``: an ``out`` folder) write ``metrics.csv``, ``metrics.json``,
    ``curves.png`` and the checkpoint ``last.npz`` (plus ``best.npz`` at a new best test
    accuracy), each holding ``files.checkpoint_extra`` too. ``files.resume``: a checkpoint dict
    ``fit`` wrote; the run continues where it stopped, with the same batches, augmentation and
    dropout masks (on the CPU), bit for bit. A checkpoint planned for fewer ``epochs`` is
    extended: ``schedule`` (built for the new count) keeps its own plan and continues from the
    saved step. ``on_step(step)`` runs after every step; returning True stops the run there (its
    state saved).

    ``plan`` (``RunPlan``) says how the run goes beyond its epochs:
    ``plan.stop_after_epochs``: return after that many epochs of this call.
    ``plan.start_time``: the ``time.perf_counter()`` the run's wall time counts from (default:
    now). ``plan.final_test_loader``: evaluated once more when the run ends, its figures added
    to the last row as ``final_test_acc``: a cheap ``test_loader`` (a subset) follows the run,
    the whole test set gives its result. ``plan.final_tta``: with test-time augmentation too
    (``evaluate_tta``; True: its ``TTA_SHIFTS``, or the shifts to use), added as
    ``final_test_tta_acc`` and ``final_test_tta_views``; a time budget too short for all the
    views (their cost over ``minidl.train.budget.FINAL_SHARE`` of it) falls back to the mirror
    pair, or to the plain pass.

    ``plan.time_budget_s``: the run ends within that many seconds of wall time (counted as
    ``FitResult.elapsed_s`` is, earlier sessions included), its schedule completed, after as many
    steps as fit: ``epochs`` is then only the plan ``schedule`` was built for (its resolution),
    and ``schedule`` is placed at ``last step * done / (done + steps that still fit)``, re-planned
    after every step from the measured speed (``budget.py``). The last epoch may be partial; its
    row's ``epoch`` is then fractional (2.4: 40% of the third). A resumed budgeted run goes
    on with the time its budget has left; it is not bit-exact (the plan follows wall time).

    ``plan.low_res=(share, transform)``: progressive resizing (``progressive.py``). The batches
    of the first ``share`` of the run (its fraction of steps done, or of a budget's schedule)
    come from ``transform`` in place of ``train_loader.transform``: smaller crops, faster steps;
    a budget counts those steps at their pixels' share of a full-size step's time.

    Ctrl-C or SIGTERM: the batch being trained finishes, the state is saved, and ``Interrupted``
    is raised; a second Ctrl-C raises it at once, saving nothing of the unfinished batch. A NaN
    or infinite loss raises ``NonFiniteLoss`` and saves nothing.
    """
    _check_run(epochs, train_loader)
    files, plan = files or RunFiles(), plan or RunPlan()
    start_time = time.perf_counter() if plan.start_time is None else plan.start_time
    final_shifts = tuple(TTA_SHIFTS if plan.final_tta is True else plan.final_tta or ())
    per_epoch, last_step = len(train_loader), epochs * len(train_loader) - 1
    position = Position(epochs=epochs)
    if files.resume is not None:
        position = _resume(files.resume, model, optimizer, schedule, train_loader, epochs, plan)
    final_loader = plan.final_test_loader
    budget = _plan_budget(plan, test_loader, final_shifts, train_loader)
    if position.finished:  # a budgeted run that used its time: nothing left to do
        return FitResult(position.metrics, position.best_acc, None, True, position.elapsed_s)
    _check_resume_fits(position, epochs, per_epoch, budget)
    first_epoch, rows = position.epoch, position.metrics
    run = _Saver(model, optimizer, schedule, files, position, start_time)
    run.averaged = plan.averaged
    average = _no_average if plan.averaged is None else plan.averaged.update_parameters
    run.final_loader, run.final_shifts, run.budget = final_loader, final_shifts, budget
    fraction = _fraction_done(schedule, budget, position, per_epoch, last_step)
    sizes = _Resizing(plan.low_res, train_loader, fraction, budget is not None)
    with DeferredSignals() as signals:
        try:
            for epoch in itertools.count(first_epoch) if budget else range(first_epoch, epochs):
                model.train()
                epoch_rng = _begin_epoch(train_loader, epoch)
                skip = position.batch if epoch == first_epoch else 0
                bar = _epoch_bar(epoch, epochs, per_epoch, skip, budget, progress, run)
                stop = out_of_time = False
                tick = time.perf_counter()  # a step's time: loading its batch, training, the bar
                sizes.next_batch(epoch * per_epoch)  # its size, drawn at the loop's next()
                for b, (x, y) in enumerate(train_loader):
                    if b < skip:  # resuming mid-epoch: the same batches, already trained on
                        sizes.next_batch(epoch * per_epoch + b + 1)
                        tick = time.perf_counter()
                        continue
                    lr = optimizer.param_groups[0]["lr"]
                    loss, correct = train_step(model, loss_fn, optimizer, x, y)
                    average(model)  # the running average of the weights, if any
                    if not math.isfinite(loss):
                        bar.close()
                        raise NonFiniteLoss(loss, epoch, b, lr, run.last[0])
                    step = Step(epoch, b, epoch * per_epoch + b + 1, loss, correct, len(y), lr)
                    step_s, tick = time.perf_counter() - tick, time.perf_counter()
                    sizes.observe(x, step_s)
                    tested_s = _tell_budget(budget, step_s, sizes.cost(x), model, test_loader)
                    step, tick = step._replace(tested=tested_s > 0), tick + tested_s
                    out_of_time, left = _next_rate(
                        schedule, budget, run, bar, step, per_epoch, last_step, sizes.cost(x)
                    )
                    sizes.next_batch(step.step, left)
                    bar.update(len(y), loss * len(y), correct)
                    stop = on_step is not None and bool(on_step(step))
                    if out_of_time:
                        break  # the budget's end: this (partial) epoch is evaluated, the run ends
                    if (stop or signals.received) and b + 1 < per_epoch:
                        # at a batch boundary: the state is whole, save it
                        return run.stop_mid_epoch(epoch, b + 1, epoch_rng, bar, signals.received)
                    if stop:
                        break  # the epoch's last batch: its end (evaluation, files) comes first
                bar.close()
                next_rng = copy.deepcopy(train_loader.rng.bit_generator.state)
                end_start = time.perf_counter()
                sizes.full_size_statistics(test_loader, model, plan.averaged)  # (if small)
                ends = out_of_time or (budget is None and epoch + 1 == epochs)
                done = (b + 1) / per_epoch
                path = run.end_epoch(epoch, bar, test_loader, next_rng, done, out_of_time, ends)
                if out_of_time:
                    break
                if budget is not None:
                    budget.evaluated(time.perf_counter() - end_start)
                if signals.received:
                    raise Interrupted(path, epoch + 1, 0, signals.received)
                pause = stop or _paused(plan.stop_after_epochs, epoch + 1 - first_epoch)
                if pause and (budget is not None or epoch + 1 < epochs):
                    return FitResult(rows, position.best_acc, path, False, position.elapsed_s)
        except KeyboardInterrupt as e:
            # a second Ctrl-C (or one outside the main thread): the batch is half done, keep
            # nothing of it; the last checkpoint written stays what a resume continues from
            raise e if isinstance(e, Interrupted) else run.interrupted_unsaved() from None
        finally:
            sizes.restore()
    return FitResult(rows, position.best_acc, run.last[0], True, run.elapsed_s())


def _begin_epoch(loader: Loader, epoch: int) -> Mapping[str, Any]:
    """Tell ``loader`` the epoch it starts (its per-image transforms count epochs from the
    run's start, a resumed run's too); its generator's state now, which a checkpoint saves."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    return copy.deepcopy(loader.rng.bit_generator.state)


def _no_average(model: Model) -> None:
    """What a run without ``plan.averaged`` does after a step."""


def _resume(
    checkpoint: Mapping[str, Any],
    model: Model,
    optimizer: Optimizer,
    schedule: Schedule | None,
    train_loader: Loader,
    epochs: int,
    plan: RunPlan,
) -> Position:
    """``restore_training_state``, and the checkpoint's running average of the weights into
    ``plan.averaged`` (a line says the average starts now when the checkpoint holds none)."""
    position = restore_training_state(checkpoint, model, optimizer, schedule, train_loader, epochs)
    if plan.averaged is not None and "averaged" in checkpoint:
        plan.averaged.load_state_dict(checkpoint["averaged"])
    elif plan.averaged is not None:
        print("the checkpoint holds no average of the weights: the average starts now")
    return position


def _paused(stop_after_epochs: int | None, epochs_done: int) -> bool:
    """``plan.stop_after_epochs`` reached: this call has trained that many epochs."""
    return stop_after_epochs is not None and 0 < stop_after_epochs <= epochs_done


def _check_run(epochs: int, train_loader: Loader) -> None:
    if epochs < 1:
        raise ValueError(f"fit: epochs must be at least 1, got {epochs}")
    if len(train_loader) == 0:
        raise ValueError("fit: the training loader yields no batches (batch_size > data set?)")


def _check_resume_fits(
    position: Position, epochs: int, per_epoch: int, budget: TimeBudget | None
) -> None:
    """A run with a fixed number of epochs cannot resume a checkpoint that trained more (a
    budgeted run's epochs are only a plan)."""
    if budget is None and position.epoch * per_epoch + position.batch > epochs * per_epoch:
        raise ValueError(
            f"fit: the checkpoint has trained {position.epoch} epochs and {position.batch} "
            f"batches; epochs={epochs} is fewer"
        )


def _plan_budget(
    plan: RunPlan,
    test_loader: Batches | None,
    final_shifts: tuple[Shift, ...],
    train_loader: Loader,
) -> TimeBudget | None:
    """A budgeted run's clock (None without a budget): as many steps as fit, the test passes
    reserved (an epoch's two with ``plan.averaged``; the final one as the fullest of
    ``final_pass_choices`` the budget affords)."""
    if plan.time_budget_s is None:
        return None
    images = _images(plan.final_test_loader)
    choices = final_pass_choices(final_shifts, skippable=test_loader is not None)
    final_images = [0 if s is None else images * views_per_image(s) for s in choices]
    return TimeBudget(
        plan.time_budget_s,
        _images(test_loader),
        train_loader.batch_size,
        final_images=final_images,
        test_passes=1 if plan.averaged is None else 2,
    )


def _tell_budget(
    budget: TimeBudget | None, step_s: float, cost: float, model: Model, test_loader: Batches | None
) -> float:
    """Tells ``budget`` (if any) a step's time, counted as a full-size step's (``cost``: the
    step's share of one); after the first step, times one test batch too. Returns the seconds
    that took (0 otherwise): not a step's time."""
    if budget is None:
        return 0.0
    budget.stepped(step_s / cost)
    if test_loader is None or not budget.wants_test_timing():  # (no test loader: no test images)
        return 0.0
    return _time_a_test_batch(model, test_loader, budget)


def _time_a_test_batch(model: Model, test_loader: Batches, budget: TimeBudget) -> float:
    """Evaluates ``test_loader``'s first batch and tells ``budget`` what it cost (the model back
    in training mode after); returns the seconds it took."""
    start = time.perf_counter()
    result = evaluate(model, _FirstImages(test_loader, 1))  # (one image: the first batch)
    seconds = time.perf_counter() - start
    budget.tested(seconds, len(result.targets))
    model.train()
    return seconds


class _FirstImages:
    """The first batches of ``loader`` that hold ``images`` images (whole batches)."""

    def __init__(self, loader: Batches, images: int):
        self.loader, self.image_count = loader, images
        self.batch_size = loader.batch_size

    def __len__(self) -> int:
        return -(-self.image_count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return itertools.islice(iter(self.loader), len(self))


def final_pass_choices(
    shifts: tuple[Shift, ...], skippable: bool = False
) -> list[tuple[Shift, ...] | None]:
    """The final test pass's view sets a short budget falls back to, fullest first: ``shifts``,
    the mirror pair, the plain pass; with ``skippable`` (the epochs are evaluated, so the run
    has a result without it) last None, no final pass."""
    choices: list[tuple[Shift, ...] | None] = [shifts]
    if views_per_image(shifts) > 2:
        choices.append(((0, 0),))
    if shifts:
        choices.append(())
    if skippable:
        choices.append(None)
    return choices


def _epoch_bar(
    epoch: int,
    epochs: int,
    per_epoch: int,
    skip: int,
    budget: TimeBudget | None,
    progress: bool,
    run: _Saver,
) -> Progress:
    """The epoch's progress bar; resuming mid-epoch, it starts from the saved batch and sums. A
    budgeted run's bar never shows more time left than its budget has."""
    deadline = None if budget is None else time.perf_counter() + budget.seconds - run.elapsed_s()
    bar = Progress(
        per_epoch, f"epoch {epoch + 1}" + ("" if budget else f"/{epochs}"),
        initial=skip, enabled=progress, later_batches=max(0, epochs - epoch - 1) * per_epoch,
        deadline=deadline,
    )  # fmt: skip
    if skip:
        bar.resume_sums(run.position.partial)
    return bar


def _next_rate(
    schedule: Schedule | None,
    budget: TimeBudget | None,
    run: _Saver,
    bar: Progress,
    step: Step,
    per_epoch: int,
    last_step: int,
    cost: float = 1.0,
) -> tuple[bool, int | None]:
    """After a step (the budget told its time): the schedule's next rate. Without a budget it
    steps once (never past the plan's last step); with one it is placed by the steps that still
    fit (``_follow_budget``), counted as full-size steps (``cost``: this step's share of one).
    Returns (True when none fits any more, the steps that still fit: None without a budget or
    before its first plan)."""
    if budget is None:
        if schedule is not None and schedule.last_epoch < last_step:
            schedule.step()
        return False, None
    left = budget.steps_left(run.elapsed_s(), per_epoch - step.batch - 1, per_epoch)
    _follow_budget(schedule, last_step, step.step, left, bar, cost)
    return left == 0, left


class _Resizing:
    """``fit``'s progressive resizing (``low_res``; without it, nothing changes): the next
    batch's size from the run's fraction done, and a step's cost relative to full size."""

    def __init__(
        self,
        low_res: tuple[float, Callable[..., Any]] | None,
        loader: Loader,
        fraction: Callable[[int, int | None], float],
        budgeted: bool,
    ):
        # a budget needs a small step's real cost: time the first steps at full size
        probe = PROBE_STEPS if budgeted else 0
        self.small = None if low_res is None else SmallImagesFirst(loader, *low_res, probe)
        self.fraction = fraction

    def next_batch(self, done: int, left: int | None = None) -> None:
        if self.small is not None:
            self.small.choose(self.fraction(done, left), done)

    def observe(self, x: Tensor, seconds: float) -> None:
        if self.small is not None:
            self.small.observe(x, seconds)

    def cost(self, x: Tensor) -> float:
        return 1.0 if self.small is None else self.small.cost(x)

    def full_size_statistics(self, test_loader: Batches | None, *models: Any) -> None:
        """Before an evaluation (with a ``test_loader``) while the run is on small crops, each
        model's batch-norm statistics recomputed over full-size training images through the
        test loader's transform (``full_size_batches``), the dropout off so that the training
        goes on as without it."""
        if test_loader is None or self.small is None or not self.small.on_small():
            return
        transform = getattr(test_loader, "transform", None)  # (a minidl DataLoader's)
        batches = list(self.small.full_size_batches(transform))  # (drawn once for all models)
        for model in models:
            if model is not None:
                update_bn(batches, model, dropout=False)

    def restore(self) -> None:
        if self.small is not None:
            self.small.restore()


def _fraction_done(
    schedule: Schedule | None,
    budget: TimeBudget | None,
    position: Position,
    per_epoch: int,
    last_step: int,
) -> Callable[[int, int | None], float]:
    """``fraction(done, left)``: the run's fraction done after ``done`` steps. A fixed run's is
    its steps over all; a budgeted run's is ``done / (done + left)``, the steps that still fit,
    as its schedule is placed (the last known while ``left`` is None; at the start, the saved
    schedule's position)."""
    if budget is None:
        return lambda done, left: done / (last_step + 1)
    known = [0.0]
    if schedule is not None and last_step > 0:
        known[0] = min(1.0, schedule.last_epoch / last_step)
    elif position.epoch or position.batch:
        known[0] = min(1.0, (position.epoch * per_epoch + position.batch) / (last_step + 1))

    def fraction(done: int, left: int | None) -> float:
        if left is not None:
            known[0] = done / max(1, done + left)
        return known[0]

    return fraction


def _images(loader: Batches | None) -> int:
    """Images a loader yields per pass (0 for None)."""
    if loader is None:
        return 0
    return len(loader.images) if hasattr(loader, "images") else len(loader) * loader.batch_size


def _follow_budget(
    schedule: Schedule | None,
    last_step: int,
    done: int,
    left: int | None,
    bar: Progress,
    cost: float = 1.0,
) -> None:
    """A budgeted run's schedule at the fraction of the run done, ``done / (done + left)``
    (``left``: the steps that still fit, None before the speed is known), never backwards; the
    bar's run ETA counts the steps that fit, at this step's pace over its ``cost``."""
    if left is None:
        return
    bar.batches_left = left / cost + 1  # the bar's update, next, counts this step off
    if schedule is not None:
        target = min(last_step, round(last_step * done / (done + left)))
        if target > schedule.last_epoch:
            schedule.set_step(target)


class _Saver:
    """``fit``'s checkpoints and per-epoch files; ``last``: (path, epoch, batch) of the last
    checkpoint written (path None before the first)."""

    def __init__(
        self,
        model: Model,
        optimizer: Optimizer,
        schedule: Schedule | None,
        files: RunFiles,
        position: Position,
        start_time: float,
    ):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.out, self.extra, self.position = files.out, files.checkpoint_extra, position
        if self.out is not None:  # made now: a path that cannot be written fails before training
            os.makedirs(self.out, exist_ok=True)
        self.earlier_s, self.start_time = position.elapsed_s, start_time
        self.last: tuple[str | None, int, int] = (None, position.epoch, position.batch)
        self.final_loader: Batches | None = None  # evaluated once more when the run ends,
        self.final_shifts: tuple[Shift, ...] = ()  # with test-time augmentation when given
        self.budget: TimeBudget | None = None  # which may afford fewer views
        self.cut_said = False  # the line saying evaluations use fewer test images was printed
        self.averaged: Averaged | None = None  # evaluated beside the model, saved with it

    def elapsed_s(self) -> float:
        return self.earlier_s + time.perf_counter() - self.start_time

    def affordable_shifts(self) -> tuple[Shift, ...] | None:
        """The final pass's shifts: all asked for, or, when the time budget reserved a plainer
        pass (``TimeBudget.final_choice``), that one, or None for no final pass, said in a line."""
        if self.budget is None:
            return self.final_shifts
        # (None last: an index the budget gives only when its choices end with no pass)
        choices = final_pass_choices(self.final_shifts, skippable=True)
        chosen = choices[self.budget.final_choice()]
        if chosen is None:
            images = _images(self.final_loader)
            print(
                f"a final pass over the {images:,} test images would take "
                f"~{self.budget.test_s(images):.0f} s at this speed, over {WHOLE_SHARE:.0%} of "
                f"the time budget: the run's last evaluation ({self.budget.test_images_now():,} "
                "images) is its result; evaluate the checkpoint on the whole set afterwards"
            )
        elif chosen != self.final_shifts:
            asked, images = views_per_image(self.final_shifts), _images(self.final_loader)
            extra_s = self.budget.test_s(images * (asked - 1))
            print(
                f"test-time augmentation in {asked} views would take ~{extra_s:.0f} s more at "
                f"this speed, over {FINAL_SHARE:.0%} of the time budget: the final pass uses "
                + (f"{views_per_image(chosen)} views" if chosen else "the plain images")
            )
        return chosen

    def affordable_test(self, test_loader: Batches) -> Batches:
        """``test_loader``, or its first batches when the time budget affords only those
        (``TimeBudget.test_images_now``), said in a line the first time."""
        if self.budget is None:
            return test_loader
        images, fit = _images(test_loader), self.budget.test_images_now()
        if fit >= images:
            return test_loader
        if not self.cut_said:
            self.cut_said = True
            print(
                f"an evaluation of the {images:,} test images would take "
                f"~{self.budget.test_s(images):.0f} s at this speed, over {EVAL_SHARE:.0%} of "
                f"the time budget: each evaluation uses the first {fit:,}"
            )
        return _FirstImages(test_loader, fit)

    def final_pass(self, row: dict[str, Any]) -> None:
        """Evaluates ``final_loader`` (if any) with the views the budget affords (if any), into
        ``row``."""
        loader = self.final_loader
        shifts = None if loader is None else self.affordable_shifts()  # (it may print a line)
        if loader is None or shifts is None:
            return
        start = time.perf_counter()
        if shifts:
            plain, tta, views = evaluate_tta_within(self.model, loader, shifts, self.deadline())
            if views < views_per_image(shifts):
                print(
                    f"test-time augmentation stopped after {views} of "
                    f"{views_per_image(shifts)} views: the next would have ended past the time "
                    "budget (the machine is slower than when the run planned its end)"
                )
            if views > 1:
                row["final_test_tta_acc"] = round(tta.accuracy, 5)
                row["final_test_tta_views"] = views
        else:
            plain = evaluate(self.model, loader)
        row["final_test_images"] = len(plain.targets)
        row["final_test_acc"] = round(plain.accuracy, 5)
        row["final_test_s"] = round(time.perf_counter() - start, 1)

    def deadline(self) -> float | None:
        """The ``time.perf_counter()`` by which a budgeted run's last test pass must end, its
        files still to write (None without a budget)."""
        if self.budget is None:
            return None
        return time.perf_counter() + self.budget.seconds - self.elapsed_s() - FILES_S

    def stop_mid_epoch(
        self,
        epoch: int,
        batch: int,
        epoch_rng: Mapping[str, Any],
        bar: Progress,
        signal_name: str | None,
    ) -> FitResult:
        """Stop after ``batch`` batches of ``epoch``, a batch boundary: the state is whole, so it
        is saved. A signal (``signal_name``) raises ``Interrupted``; an ``on_step`` stop returns
        the unfinished run."""
        bar.close()
        path = self.save(epoch, batch, epoch_rng, bar.sums())
        if signal_name:
            raise Interrupted(path, epoch, batch, signal_name)
        position = self.position
        return FitResult(position.metrics, position.best_acc, path, False, position.elapsed_s)

    def interrupted_unsaved(self) -> Interrupted:
        """A second Ctrl-C mid-batch: nothing of the batch is kept; the last checkpoint stays."""
        path, epoch, batch = self.last
        return Interrupted(path, epoch, batch, "SIGINT", saved=False)

    def save(
        self,
        epoch: int,
        batch: int,
        loader_rng: Mapping[str, Any],
        partial: dict[str, Any],
        best: bool = False,
    ) -> str | None:
        position = self.position
        position.epoch, position.batch, position.partial = epoch, batch, partial
        position.elapsed_s = self.elapsed_s()
        if self.out is None:
            return None
        state = dict(self.extra or {})
        state.update(
            training_state(self.model, self.optimizer, self.schedule, loader_rng, position)
        )
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        self.last = (save_checkpoint(state, self.out, best=best), epoch, batch)
        return self.last[0]

    def end_epoch(
        self,
        epoch: int,
        bar: Progress,
        test_loader: Batches | None,
        next_rng: Mapping[str, Any],
        done: float = 1.0,
        finished: bool = False,
        run_ends: bool = False,
    ) -> str | None:
        """Evaluate, append the epoch's row, save the checkpoint and the files, print the line.
        ``done``: the fraction of the epoch trained (below 1 when a time budget ended it);
        ``finished``: a budgeted run ends here; ``run_ends``: any run ends here (the final
        test pass)."""
        rows, position = self.position.metrics, self.position
        row = {
            "epoch": epoch + 1 if done >= 1 else round(epoch + done, 3),
            "train_loss": round(bar.loss_sum / bar.seen, 5),
            "train_acc": round(bar.correct / bar.seen, 5),
        }
        best = False
        if test_loader is not None:
            tick = time.perf_counter()
            result = evaluate(self.model, self.affordable_test(test_loader))
            if self.budget is not None:  # a test image's cost now, for the passes still to come
                self.budget.tested(time.perf_counter() - tick, len(result.targets))
            row["test_loss"], row["test_acc"] = round(result.loss, 5), round(result.accuracy, 5)
            row["test_images"] = len(result.targets)
            if self.averaged is not None:
                averaged = evaluate(self.averaged, self.affordable_test(test_loader))
                row["averaged_test_loss"] = round(averaged.loss, 5)
                row["averaged_test_acc"] = round(averaged.accuracy, 5)
            best = result.accuracy > position.best_acc
            position.best_acc = max(position.best_acc, result.accuracy)
        if run_ends:
            self.final_pass(row)
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["images_per_s"] = round(bar.images_per_s, 1)
        row["time_s"] = round(self.elapsed_s(), 1)
        rows.append(row)  # (in the checkpoint too)
        position.finished = finished
        path = self.save(epoch + 1, 0, next_rng, Position().partial, best=best)
        if self.out is not None:
            write_metrics(rows, self.out)
            plot_curves(rows, os.path.join(self.out, "curves.png"))
        print(_epoch_line(row, bar.images_per_s))
        return path


def _epoch_line(row: dict[str, Any], images_per_s: float) -> str:
    line = f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"
    if "test_acc" in row:
        line += f", test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}"
        line += f" ({row['test_images']:,} images)"
    if "averaged_test_acc" in row:
        line += f", averaged weights {row['averaged_test_acc']:.2%}"
    line += f", {images_per_s:.0f} images/s"
    if "final_test_acc" in row:
        line += f"\nwhole test set ({row['final_test_images']:,} images): "
        line += f"{row['final_test_acc']:.2%}"
        if "final_test_tta_acc" in row:
            line += f", {row['final_test_tta_acc']:.2%} with test-time augmentation"
            line += f" ({row['final_test_tta_views']} views averaged)"
    return line


def estimate_epochs(
    model: Model,
    loss_fn: LossFn,
    loader: Loader,
    budget_s: float,
    eval_images: int = 0,
    final_images: int = 0,
) -> int:
    """How many epochs fit in ``budget_s`` seconds: time a few training steps (forward and
    backward), count ``eval_images`` evaluated after each epoch and ``final_images`` at the end
    at a third of a training image, and keep 5% to spare. At most ``CALIBRATION_SHARE`` of the
    budget goes to the timing (at least one step): a slow device's steps are better spent
    training. The model, the loader and the dropout generator are left as they were."""
    weights = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    loader_rng, dropout_rng = copy.deepcopy(loader.rng.bit_generator.state), np.random.get_state()
    model.train()
    batches, timed = (batch for _ in range(8) for batch in loader), []
    start = time.perf_counter()
    for _ in range(8):
        tick = time.perf_counter()
        x, y = next(batches)
        loss_fn(model(x), y).backward()
        timed.append((time.perf_counter() - tick, len(y)))
        if time.perf_counter() - start > CALIBRATION_SHARE * budget_s:
            break
    timed = timed[2:] or timed[-1:]  # the first two allocate the buffers later steps reuse
    per_image = sum(s for s, _ in timed) / sum(n for _, n in timed)
    model.zero_grad()
    model.load_state_dict(weights)
    loader.rng.bit_generator.state = loader_rng
    np.random.set_state(dropout_rng)
    epoch_s = per_image * (len(loader) * loader.batch_size + eval_images / 3)
    return max(1, int((0.95 * budget_s - per_image * final_images / 3) / epoch_s))


# ---------------------------------------------------------------------------- progress, Ctrl-C
class Progress:
    """A per-epoch progress bar (tqdm): running loss and accuracy, images/s, the epoch's ETA and
    the whole run's (``run_left``: this epoch's and ``later_batches`` more at the same pace, and
    with a ``deadline``, the ``time.perf_counter()`` a budgeted run ends by, never more than the
    time until then: the pace of small crops, or of a busy minute, would overstate it).

    ``update(n, loss_sum, correct)`` after each batch, with the batch's size, summed loss and
    number of correct predictions. ``images_per_s`` counts only the batches trained since the bar
    started, so an epoch resumed halfway is not credited with the images trained before.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        initial: int = 0,
        enabled: bool = True,
        later_batches: int = 0,
        deadline: float | None = None,
    ):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="batch",
            dynamic_ncols=True,
            mininterval=1.0,
            file=sys.stderr,
            disable=not enabled,
            leave=True,
        )
        self.seen, self.loss_sum, self.correct = 0, 0.0, 0
        self.timed_images, self.timed_batches = 0, 0
        self.batches_left: float = total - initial + later_batches  # (a budget's: fractional)
        self.start = time.perf_counter()
        self.deadline = deadline
        self.closed_at: float | None = None

    def resume_sums(self, partial: dict[str, Any]) -> None:
        """Continue the running sums of an epoch resumed halfway (a checkpoint's ``partial``)."""
        self.seen, self.loss_sum = partial["seen"], partial["loss_sum"]
        self.correct = partial["correct"]
        self.start = time.perf_counter()  # the skipped batches' replay is no training time

    def update(self, n: int, loss_sum: float, correct: int) -> None:
        self.seen += n
        self.loss_sum += loss_sum
        self.correct += correct
        self.timed_images += n
        self.timed_batches += 1
        self.batches_left -= 1
        self.bar.set_postfix(
            loss=f"{self.loss_sum / self.seen:.3f}",
            acc=f"{self.correct / self.seen:.1%}",
            img_s=f"{self.images_per_s:.0f}",
            run_left=_duration(self.run_left_s),
            refresh=False,
        )
        self.bar.update(1)

    def sums(self) -> dict[str, Any]:
        """The running sums, as a checkpoint's ``partial`` entry keeps them."""
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen}

    @property
    def images_per_s(self) -> float:
        """The images trained per second since the bar started, until it was closed (the
        epoch's evaluation is not training time)."""
        end = time.perf_counter() if self.closed_at is None else self.closed_at
        return self.timed_images / max(end - self.start, 1e-9)

    @property
    def run_left_s(self) -> float:
        """Seconds of training left in the run at this epoch's pace (evaluations not counted),
        at most the seconds until ``deadline``."""
        now = time.perf_counter()
        at_pace = self.batches_left * (now - self.start) / max(self.timed_batches, 1)
        return at_pace if self.deadline is None else max(0.0, min(at_pace, self.deadline - now))

    def close(self) -> None:
        self.closed_at = self.closed_at or time.perf_counter()
        self.bar.close()


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


class DeferredSignals:
    """``with DeferredSignals() as s:`` notes Ctrl-C (SIGINT) and SIGTERM in ``s.received`` (the
    signal's name) instead of stopping the program, so that a loop can stop where its state is
    whole and save it. A second Ctrl-C raises ``KeyboardInterrupt`` at once. (Outside the main
    thread, where signals cannot be handled, it does nothing.)"""

    def __enter__(self) -> DeferredSignals:
        self.received: str | None = None
        self.previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM"):
                number = getattr(signal, name, None)
                if number is not None:
                    self.previous[number] = signal.signal(number, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.received = self.received or signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
