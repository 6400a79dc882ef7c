"""The training loop, for any model: ``fit`` runs epochs of ``train_step`` and ``evaluate``s.

``train_step`` is the five lines at the heart of every deep-learning program (forward, loss,
zero the gradients, backward, optimizer step), written once here and used by ``fit``,
``python googlenet.py train`` and the lessons. Around it ``fit`` keeps the chores: a progress
bar, one metrics row per epoch (``metrics.csv``/``metrics.json``), curves, checkpoints
(``minidl.checkpoint``: ``last.npz`` after every epoch, ``best.npz`` at the best test
accuracy), resuming a checkpoint exactly (mid-epoch too), and Ctrl-C: during an epoch it saves
where the run stands and raises ``Interrupted``; while an epoch's files are being written it
waits until they are complete. ``estimate_epochs`` sizes a run to a time budget.

Models whose training output is a tuple (GoogLeNet's auxiliary heads) hand it to the loss
function whole; accuracy is counted on its first entry, the main logits (torchvision's order).
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .checkpoint import Position, restore_training_state, save_checkpoint, training_state
from .function import no_grad
from .metrics import write_metrics
from .ops.loss import cross_entropy
from .tensor import Tensor
from .viz import plot_curves

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
    return loss.item(), int((logits.data.argmax(axis=1) == y.data).sum())


class Evaluation(NamedTuple):
    loss: float  # mean cross-entropy
    accuracy: float
    targets: np.ndarray
    predictions: np.ndarray


def evaluate(model: Any, loader: Any) -> Evaluation:
    """Mean cross-entropy, accuracy, targets and predictions over a loader: eval mode, no graph."""
    model.eval()
    loss_sum, targets, predictions = 0.0, [], []
    with no_grad():
        for x, y in loader:
            logits = model(x)
            loss_sum += cross_entropy(logits, y).item() * len(y)
            targets.append(y.numpy())
            predictions.append(logits.numpy().argmax(axis=1))
    targets, predictions = np.concatenate(targets), np.concatenate(predictions)
    return Evaluation(
        loss_sum / len(targets), float((targets == predictions).mean()), targets, predictions
    )


class Step(NamedTuple):
    """What ``fit`` hands ``on_step`` after each step."""

    epoch: int  # from 0
    batch: int  # from 0, within the epoch
    step: int  # steps since the run began, this one included
    loss: float  # the batch's mean loss
    correct: int
    size: int  # images in the batch
    lr: float  # the learning rate the step used (first parameter group)


class FitResult(NamedTuple):
    rows: list[dict[str, Any]]  # one per epoch, as in metrics.json
    best_acc: float
    checkpoint: str | None  # last.npz, when ``fit`` was given a folder
    finished: bool  # False: stopped early (stop_after_epochs, on_step); resume to go on
    elapsed_s: float  # wall time of the run, earlier sessions included


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: the run's state was saved first (``checkpoint``, None without an
    output folder); resuming it continues at ``epoch``, ``batch`` (both from 0)."""

    def __init__(self, checkpoint: str | None, epoch: int, batch: int):
        super().__init__(checkpoint, epoch, batch)
        self.checkpoint, self.epoch, self.batch = checkpoint, epoch, batch


def fit(
    model: Any,
    loss_fn: LossFn,
    train_loader: Any,
    optimizer: Any,
    epochs: int,
    *,
    schedule: Any = None,
    test_loader: Any = None,
    out: str | os.PathLike | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    stop_after_epochs: int | None = None,
    on_step: Callable[[Step], bool | None] | None = None,
    progress: bool = True,
    start_time: float | None = None,
) -> FitResult:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` (a ``minidl.data.DataLoader``).

    ``loss_fn(output, y)``: the loss of the model's training output. ``schedule`` is stepped
    after every batch, at most ``epochs * len(train_loader) - 1`` times (the last step's rate is
    never used). After each epoch: evaluate on ``test_loader`` (when given), print a line, and
    with an ``out`` folder write ``metrics.csv``, ``metrics.json``, ``curves.png`` and the
    checkpoint ``last.npz`` (plus ``best.npz`` at a new best test accuracy), each holding
    ``checkpoint_extra`` too. ``resume``: a checkpoint dict ``fit`` wrote; the run continues
    where it stopped, with the same batches, augmentation and dropout masks (on the CPU).
    ``stop_after_epochs``: return after that many epochs of this call. ``on_step(step)`` runs
    after every step; returning True stops the run there (its state saved, as on Ctrl-C).
    ``start_time``: the ``time.perf_counter()`` the run's wall time counts from (default: now).
    Ctrl-C during an epoch saves the state and raises ``Interrupted``.
    """
    if epochs < 1:
        raise ValueError(f"fit: epochs must be at least 1, got {epochs}")
    start_time = time.perf_counter() if start_time is None else start_time
    per_epoch = len(train_loader)
    if per_epoch == 0:
        raise ValueError("fit: the training loader yields no batches (batch_size > data set?)")
    last_step = epochs * per_epoch - 1
    if resume is not None:
        position = restore_training_state(resume, model, optimizer, schedule, train_loader)
    else:
        position = Position()
    earlier_s, first_epoch, rows = position.elapsed_s, position.epoch, position.metrics

    def save(epoch: int, batch: int, loader_rng: Any, partial: dict, best: bool = False):
        position.epoch, position.batch, position.partial = epoch, batch, partial
        position.elapsed_s = earlier_s + time.perf_counter() - start_time
        if out is None:
            return None
        state = dict(checkpoint_extra or {})
        state.update(training_state(model, optimizer, schedule, loader_rng, position))
        return save_checkpoint(state, out, best=best)

    path = None
    for epoch in range(first_epoch, epochs):
        model.train()
        epoch_rng = copy.deepcopy(train_loader.rng.bit_generator.state)
        skip = position.batch if epoch == first_epoch else 0
        bar = Progress(per_epoch, f"epoch {epoch + 1}/{epochs}", initial=skip, enabled=progress)
        if skip:
            bar.seen, bar.loss_sum, bar.correct = (
                position.partial["seen"],
                position.partial["loss_sum"],
                position.partial["correct"],
            )
        batch, stop = skip, False
        try:
            for b, (x, y) in enumerate(train_loader):
                if b < skip:  # resuming mid-epoch: the same batches, already trained on
                    continue
                lr = optimizer.param_groups[0]["lr"]
                loss, correct = train_step(model, loss_fn, optimizer, x, y)
                if schedule is not None and schedule.last_epoch < last_step:
                    schedule.step()
                bar.update(len(y), loss * len(y), correct)
                batch = b + 1
                if on_step is not None:
                    stop = bool(
                        on_step(
                            Step(epoch, b, epoch * per_epoch + batch, loss, correct, len(y), lr)
                        )
                    )
                    if stop:
                        break
        except KeyboardInterrupt:
            bar.close()
            raise Interrupted(save(epoch, batch, epoch_rng, bar.sums()), epoch, batch) from None
        bar.close()
        if stop:
            path = save(epoch, batch, epoch_rng, bar.sums())
            return FitResult(rows, position.best_acc, path, False, position.elapsed_s)
        with DeferredInterrupt() as interrupt:  # a Ctrl-C now waits until the files are written
            row = {
                "epoch": epoch + 1,
                "train_loss": round(bar.loss_sum / bar.seen, 5),
                "train_acc": round(bar.correct / bar.seen, 5),
            }
            best = False
            if test_loader is not None:
                result = evaluate(model, test_loader)
                row["test_loss"], row["test_acc"] = round(result.loss, 5), round(result.accuracy, 5)
                best = result.accuracy > position.best_acc
                position.best_acc = max(position.best_acc, result.accuracy)
            row["lr"] = optimizer.param_groups[0]["lr"]
            row["images_per_s"] = round(bar.images_per_s, 1)
            row["time_s"] = round(earlier_s + time.perf_counter() - start_time, 1)
            rows.append(row)  # (in the checkpoint too)
            next_rng = copy.deepcopy(train_loader.rng.bit_generator.state)
            path = save(epoch + 1, 0, next_rng, Position().partial, best=best)
            if out is not None:
                write_metrics(rows, out)
                plot_curves(rows, os.path.join(out, "curves.png"))
            print(_epoch_line(row, bar.images_per_s))
        if interrupt.hit:
            raise Interrupted(path, epoch + 1, 0)
        if (
            stop_after_epochs
            and epoch + 1 - first_epoch >= stop_after_epochs
            and epoch + 1 < epochs
        ):
            return FitResult(rows, position.best_acc, path, False, position.elapsed_s)
    elapsed = earlier_s + time.perf_counter() - start_time
    return FitResult(rows, position.best_acc, path, True, elapsed)


def _epoch_line(row: dict[str, Any], images_per_s: float) -> str:
    line = f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}"
    if "test_acc" in row:
        line += f", test loss {row['test_loss']:.4f} acc {row['test_acc']:.2%}"
    return line + f", {images_per_s:.0f} images/s"


def estimate_epochs(
    model: Any, loss_fn: LossFn, loader: Any, budget_s: float, eval_images: int = 0
) -> int:
    """How many epochs fit in ``budget_s`` seconds: time a few training steps (forward and
    backward), count ``eval_images`` evaluated after each epoch at a third of a training image,
    and keep 5% to spare. The model, the loader and the dropout generator are left as they were."""
    weights = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    loader_rng, dropout_rng = copy.deepcopy(loader.rng.bit_generator.state), np.random.get_state()
    model.train()
    batches, seen, start = (batch for _ in range(8) for batch in loader), 0, None
    for i in range(8):
        x, y = next(batches)
        if i == 2:  # the first steps are slower: the allocator's heap and the caches warm up
            start, seen = time.perf_counter(), 0
        loss_fn(model(x), y).backward()
        seen += len(y)
    per_image = (time.perf_counter() - start) / seen
    model.zero_grad()
    model.load_state_dict(weights)
    loader.rng.bit_generator.state = loader_rng
    np.random.set_state(dropout_rng)
    epoch_s = per_image * (len(loader) * loader.batch_size + eval_images / 3)
    return max(1, int(0.95 * budget_s / epoch_s))


# ---------------------------------------------------------------------------- progress, Ctrl-C
class Progress:
    """A per-epoch progress bar (tqdm): running loss and accuracy, images/s and the ETA.

    ``update(n, loss_sum, correct)`` after each batch, with the batch's size, summed loss and
    number of correct predictions. ``images_per_s`` is measured over the batches of this bar.
    """

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True):
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
        self.start = time.perf_counter()

    def update(self, n: int, loss_sum: float, correct: int) -> None:
        self.seen += n
        self.loss_sum += loss_sum
        self.correct += correct
        self.bar.set_postfix(
            loss=f"{self.loss_sum / self.seen:.3f}",
            acc=f"{self.correct / self.seen:.1%}",
            img_s=f"{self.images_per_s:.0f}",
            refresh=False,
        )
        self.bar.update(1)

    def sums(self) -> dict[str, Any]:
        """The running sums, as a checkpoint's ``partial`` entry keeps them."""
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen}

    @property
    def images_per_s(self) -> float:
        return self.seen / max(time.perf_counter() - self.start, 1e-9)

    def close(self) -> None:
        self.bar.close()


class DeferredInterrupt:
    """``with DeferredInterrupt() as d:`` notes Ctrl-C (SIGINT) instead of raising it, so that a
    block writing a checkpoint and its metrics runs to the end; ``d.hit`` tells afterwards.
    (Outside the main thread, where signals cannot be handled, it does nothing.)"""

    def __enter__(self) -> DeferredInterrupt:
        self.hit, self.previous = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.hit = True

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
