"""Training checkpoints: what a run saves so that it can continue exactly where it stopped.

A checkpoint is a dict written with ``md.save`` (an ``.npz``, atomically), as ``<folder>/last.npz``
and, when the run reached its best test accuracy, copied to ``<folder>/best.npz``:

    model, optimizer, scheduler   the state dicts (``scheduler`` None without a schedule)
    epoch, batch                  where to continue: batch ``batch`` of epoch ``epoch`` (from 0)
    epochs                        the run's planned epoch count (a resume may extend it)
    loader_rng                    the training loader's generator at the start of that epoch: the
                                  epoch's shuffle and augmentation are replayed and the first
                                  ``batch`` batches skipped
    dropout_rng                   NumPy's global generator (dropout masks on the CPU)
    partial                       the epoch's running sums so far: loss_sum, correct, seen
    elapsed_s, best_acc           wall time and the best test accuracy so far
    metrics                       the per-epoch rows so far (``metrics.json``)

plus what the caller adds (googlenet.py stores how to rebuild its model and the run's options).
Nothing here knows a particular model. ``run_lock`` keeps two runs out of one folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from ..serialization import atomic_open, load, process_alive, remove_stale_temp_files, save
from .protocols import Loader, Model, Optimizer, Schedule

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: the process id in the lock file alone decides
    fcntl = None

LOCK_FILE = ".lock"


@dataclass
class Position:
    """Where a run stands: the loop's state besides the model, optimizer and generators."""

    epoch: int = 0
    batch: int = 0
    epochs: int = 0  # planned
    partial: dict[str, Any] = field(
        default_factory=lambda: {"loss_sum": 0.0, "correct": 0, "seen": 0}
    )
    elapsed_s: float = 0.0
    best_acc: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False  # a budgeted run that used its time (its epoch count was not fixed)


def training_state(
    model: Model,
    optimizer: Optimizer,
    schedule: Schedule | None,
    loader_rng: Mapping[str, Any],
    position: Position,
) -> dict[str, Any]:
    """The checkpoint dict for a run at ``position`` (``loader_rng``: the training loader's
    generator state at the start of ``position.epoch``)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if schedule is None else schedule.state_dict(),
        "epoch": position.epoch,
        "batch": position.batch,
        "epochs": position.epochs,
        "loader_rng": loader_rng,
        "dropout_rng": list(np.random.get_state()),
        "partial": dict(position.partial),
        "elapsed_s": position.elapsed_s,
        "best_acc": position.best_acc,
        "finished": position.finished,
        "metrics": position.metrics,
    }


def restore_training_state(
    checkpoint: Mapping[str, Any],
    model: Model,
    optimizer: Optimizer,
    schedule: Schedule | None,
    loader: Loader,
    epochs: int | None = None,
) -> Position:
    """Load a checkpoint's states into the model, optimizer, schedule, the loader's generator and
    NumPy's global one; returns the run's position.

    ``epochs``: the run's epoch count now. When it differs from the checkpoint's plan, the run
    is being extended: ``schedule`` was built for the new count, so it keeps its plan (total
    steps, rates) and takes only the saved step count, continuing from there.
    """
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    planned = int(checkpoint.get("epochs", 0)) or None  # (absent in older checkpoints)
    replan = epochs is not None and planned is not None and planned != epochs
    if schedule is not None:
        saved = checkpoint["scheduler"]
        schedule.load_state_dict({"last_epoch": saved["last_epoch"]} if replan else saved)
    loader.rng.bit_generator.state = checkpoint["loader_rng"]
    np.random.set_state(tuple(checkpoint["dropout_rng"]))
    return Position(
        int(checkpoint["epoch"]),
        int(checkpoint["batch"]),
        epochs if epochs is not None else planned or 0,
        dict(checkpoint["partial"]),
        float(checkpoint["elapsed_s"]),
        float(checkpoint["best_acc"]),
        list(checkpoint["metrics"]),
        bool(checkpoint.get("finished", False)),  # (absent in older checkpoints)
    )


def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, best: bool = False) -> str:
    """``md.save`` the state as ``<folder>/last.npz`` (atomic); copy it to ``best.npz`` when
    ``best``. Returns the path of ``last.npz``."""
    last = os.path.join(os.fspath(folder), "last.npz")
    save(state, last)
    if best:
        with open(last, "rb") as source, atomic_open(os.path.join(folder, "best.npz")) as f:
            shutil.copyfileobj(source, f)
    return last


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``md.load`` a checkpoint dict. FileNotFoundError when ``path`` does not exist, ValueError
    when the file is corrupt or holds something else than a dict with a ``model`` entry."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        checkpoint = load(path)
    except ValueError as e:
        raise ValueError(
            f"checkpoint {path!r} is corrupt or not a minidl checkpoint: {e}"
        ) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ValueError(f"{path!r} is not a checkpoint (no model entry)")
    return checkpoint


class RunLocked(RuntimeError):
    """Another process holds a run folder's lock (``pid``)."""

    def __init__(self, folder: str, pid: int | None):
        who = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{folder!r} is in use: {who} is training into it (lock file {LOCK_FILE}). Wait for "
            "it to finish or stop it, or use another folder"
        )
        self.folder, self.pid = folder, pid


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[int | None]:
    """Hold ``<folder>/.lock`` while a run writes into ``folder``; yields the process id of a dead
    run whose lock it took over (None if none), after removing that run's half-written temporary
    files. The file holds the owner's process id. Where ``fcntl`` exists the lock is an
    ``flock`` (the kernel drops it when its process dies, however it dies); elsewhere a lock
    whose process is not running is stale and taken over. ``RunLocked`` when a live process
    holds it; ``OSError`` when the folder is not writable (so it fails before any real work)."""
    folder = os.fspath(folder)
    path = os.path.join(folder, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        previous = _read_pid(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(folder, previous) from None
        elif previous and process_alive(previous):
            raise RunLocked(folder, previous)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temp_files(folder)
        try:
            yield previous if previous and previous != os.getpid() else None
        finally:
            os.ftruncate(fd, 0)  # released: no process id (the file stays; see flock)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
