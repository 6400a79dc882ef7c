"""The chores around a training loop: progress bar, metrics files, checkpoints, plots.

Nothing here knows about a particular model. Every file is written atomically (to a temporary
file in the same folder, then renamed over the target), so an interrupted run never leaves a
half-written metrics file, checkpoint or picture behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .serialization import atomic_open, save


# ---------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` to ``dst`` so that ``dst`` is always either the old or the new file."""
    with open(src, "rb") as source, atomic_open(dst) as f:
        shutil.copyfileobj(source, f)


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


# ---------------------------------------------------------------------------- progress
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

    @property
    def images_per_s(self) -> float:
        return self.seen / max(time.perf_counter() - self.start, 1e-9)

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------- metrics
class MetricsLog:
    """One row per epoch, rewritten as ``metrics.csv`` and ``metrics.json`` after each epoch."""

    def __init__(self, folder: str | os.PathLike, rows: Sequence[dict[str, Any]] = ()):
        self.folder = os.fspath(folder)
        self.rows: list[dict[str, Any]] = [dict(r) for r in rows]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        self.write()

    def write(self) -> None:
        atomic_write_bytes(
            os.path.join(self.folder, "metrics.json"),
            (json.dumps(self.rows, indent=1) + "\n").encode(),
        )
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(os.path.join(self.folder, "metrics.csv"), text.getvalue().encode())


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict[str, Any], folder: str | os.PathLike, best: bool = False) -> str:
    """``md.save`` the state as ``<folder>/last.npz`` (atomic); copy it to ``best.npz`` when
    ``best``. Returns the path of ``last.npz``."""
    last = os.path.join(os.fspath(folder), "last.npz")
    save(state, last)
    if best:
        atomic_copy(last, os.path.join(os.fspath(folder), "best.npz"))
    return last


# ---------------------------------------------------------------------------- pictures
def _save_figure(fig: Any, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Loss and accuracy per epoch (train and test), and test accuracy against wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for split, style in (("train", "-o"), ("test", "-s")):
        axes[0].plot(epochs, [r[f"{split}_loss"] for r in rows], style, ms=3, label=split)
        axes[1].plot(epochs, [100 * r[f"{split}_acc"] for r in rows], style, ms=3, label=split)
    axes[2].plot([r["time_s"] / 60 for r in rows], [100 * r["test_acc"] for r in rows], "-s", ms=3)
    titles = ("loss", "accuracy (%)", "test accuracy (%) against wall time")
    xlabels = ("epoch", "epoch", "minutes")
    for ax, title, xlabel in zip(axes, titles, xlabels):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(targets), np.asarray(predictions)), 1)
    return m


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as text: rows are true classes, columns predicted."""
    short = [c[:5] for c in classes]
    width = max(5, len(str(matrix.max())))
    head = " " * 12 + " ".join(s.rjust(width) for s in short)
    lines = [head]
    for name, row in zip(classes, matrix):
        lines.append(f"{name[:11]:<11} " + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike) -> None:
    """The confusion matrix as a heat map with the counts written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2
    for i in ticks:
        for j in ticks:
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)
