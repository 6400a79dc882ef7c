"""Pictures of what happened: the computation graph as Graphviz DOT, and training curves.

``to_dot(y)`` walks the graph behind ``y`` the way backward does and writes one box per tensor
(name, shape, dtype) and one ellipse per Function (its op). ``render(y, "graph.svg")`` runs the
``dot`` program when it is installed and says how to get it when it is not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

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
    dot_text = to_dot(output, verbose=verbose)
    dot_path = os.path.splitext(path)[0] + ".dot"
    with open(dot_path, "w") as f:
        f.write(dot_text)
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(
            f"Graphviz's 'dot' program was not found, so {path} was not drawn; the graph's DOT "
            f"text is in {dot_path}. Install Graphviz (apt install graphviz, brew install "
            f"graphviz, conda install graphviz) or paste the text into an online DOT viewer."
        )
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix="." + fmt)
    os.close(fd)
    try:
        subprocess.run([exe, f"-T{fmt}", dot_path, "-o", tmp], check=True, capture_output=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def plot_curves(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    x_key: str = "epoch",
    title: str = "Training curves",
) -> str:
    """Loss and accuracy side by side from a history dict, e.g. the columns of metrics.csv.

    Keys ending in ``loss`` go left, keys ending in ``acc``/``accuracy`` go right.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(history[x_key])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, values in history.items():
        if key == x_key:
            continue
        if key.endswith("loss"):
            ax_loss.plot(x, values, marker="o", ms=3, label=key)
        elif key.endswith("acc") or key.endswith("accuracy"):
            ax_acc.plot(x, [100 * v for v in values], marker="o", ms=3, label=key)
    ax_loss.set(xlabel=x_key, ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel=x_key, ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save_figure(fig, path)


def _save_figure(fig: Any, path: str | os.PathLike) -> str:
    """Save a matplotlib figure atomically (temp file in the same folder, then rename)."""
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
