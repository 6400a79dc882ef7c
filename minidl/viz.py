"""Pictures of what happened: the computation graph, training curves, a confusion matrix.

``to_dot(y)`` walks the graph behind ``y`` the way backward does and writes one box per tensor
(name, shape, dtype) and one ellipse per Function (its op). ``render(y, "graph.svg")`` runs the
``dot`` program when it is installed and says how to get it when it is not. ``plot_curves``
draws loss and accuracy from per-epoch rows (``metrics.json``) or columns, ``plot_confusion``
a confusion matrix. Every file is written atomically (``minidl.serialization.atomic_open``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .serialization import atomic_open
from .tensor import Tensor


def _tensor_label(t: Tensor) -> str:
    shape = "x".join(map(str, t.shape)) or "scalar"
    name = f"{t.name}\\n" if t.name else ""
    return f"{name}{shape} {t.dtype}"


def to_dot(output: Tensor, verbose: bool = False) -> str:
    """The graph that produced ``output`` as DOT text (data nodes: boxes, functions: ellipses).

    With ``verbose`` a scalar's value is shown in its box too.
    """
    lines = ["digraph minidl {", '  rankdir="LR";', '  node [fontname="Helvetica", fontsize=11];']
    seen: set[int] = set()

    def data_node(t: Tensor) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        label = _tensor_label(t)
        if verbose and t.size == 1:
            label += f"\\n= {t.item():.4g}"
        color = "lightblue" if t.creator is None and t.requires_grad else "white"
        lines.append(f'  t{id(t)} [label="{label}", shape=box, style=filled, fillcolor="{color}"];')

    data_node(output)
    stack = [output.creator] if output.creator is not None else []
    done: set[int] = set()
    while stack:
        fn = stack.pop()
        if id(fn) in done:
            continue
        done.add(id(fn))
        lines.append(
            f'  f{id(fn)} [label="{fn.name}", shape=ellipse, style=filled, fillcolor="orange"];'
        )
        for ref in fn.outputs:
            out = ref()
            if out is not None:
                data_node(out)
                lines.append(f"  f{id(fn)} -> t{id(out)};")
        for x in fn.inputs:
            data_node(x)
            lines.append(f"  t{id(x)} -> f{id(fn)};")
            if x.creator is not None:
                stack.append(x.creator)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(output: Tensor, path: str | os.PathLike, verbose: bool = False) -> str:
    """Write the graph of ``output`` to ``path`` (.svg, .png or .pdf) with Graphviz's ``dot``.

    Also writes the DOT text next to it (``path`` with suffix .dot). Returns the path written.
    Raises RuntimeError with install instructions when ``dot`` is missing; the .dot file is
    still written so the graph is not lost.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    dot_path = os.path.splitext(path)[0] + ".dot"
    with atomic_open(dot_path) as f:
        f.write(to_dot(output, verbose=verbose).encode())
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(
            f"Graphviz's 'dot' program was not found, so {path} was not drawn; the graph's DOT "
            f"text is in {dot_path}. Install Graphviz (apt install graphviz, brew install "
            f"graphviz, conda install graphviz) or paste the text into an online DOT viewer."
        )
    drawn = subprocess.run([exe, f"-T{fmt}", dot_path], check=True, capture_output=True).stdout
    with atomic_open(path) as f:
        f.write(drawn)
    return path


def _pyplot() -> Any:
    """matplotlib.pyplot, on the file-only Agg backend when nothing has chosen a backend yet.

    Once pyplot is imported (a notebook's inline backend, a window, a program's own choice) the
    backend is left alone: switching it there would stop a notebook's later figures showing.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    x_key: str = "epoch",
    title: str = "Training curves",
) -> str:
    """Loss and accuracy against ``x_key``; returns ``path``.

    ``history``: columns (``{"epoch": [...], "train_loss": [...], ...}``) or rows, one dict per
    epoch as ``minidl.train.fit`` writes them to ``metrics.json``. Keys ending in ``loss`` go
    left, keys ending in ``acc``/``accuracy`` in the middle (in %); with a ``time_s`` column
    (wall time) a third panel shows the accuracies against minutes.
    """
    plt = _pyplot()
    if not isinstance(history, Mapping):  # rows -> columns
        keys = dict.fromkeys(k for row in history for k in row)
        history = {k: [row.get(k, np.nan) for row in history] for k in keys}
    x = list(history[x_key])
    timed = "time_s" in history and x_key != "time_s"
    fig, axes = plt.subplots(1, 3 if timed else 2, figsize=(16 if timed else 11, 4.2))
    ax_loss, ax_acc = axes[0], axes[1]
    for key, values in history.items():
        if key == x_key:
            continue
        if key.endswith("loss"):
            ax_loss.plot(x, values, marker="o", ms=3, label=key)
        elif key.endswith(("acc", "accuracy")):
            percent = [100 * v for v in values]
            ax_acc.plot(x, percent, marker="o", ms=3, label=key)
            if timed:
                minutes = [t / 60 for t in history["time_s"]]
                axes[2].plot(minutes, percent, marker="s", ms=3, label=key)
    ax_loss.set(xlabel=x_key, ylabel="loss", title="Loss")
    ax_acc.set(xlabel=x_key, ylabel="accuracy (%)", title="Accuracy")
    if timed:
        axes[2].set(xlabel="minutes", ylabel="accuracy (%)", title="Accuracy against wall time")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | os.PathLike) -> str:
    """The confusion matrix (``m[true, predicted]`` counts) as a heat map with the counts."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true")
    threshold = matrix.max() / 2
    for i in ticks:
        for j in ticks:
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> str:
    """Save a matplotlib figure atomically (the format from the suffix, PNG by default), close
    it and return ``path``; ``savefig`` goes to ``fig.savefig`` (``bbox_inches="tight"``...)."""
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        with atomic_open(path) as f:
            fig.savefig(f, format=fmt, **{"dpi": 110, **savefig})
    finally:
        plt.close(fig)
    return path
