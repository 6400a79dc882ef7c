"""Small helpers the lessons share: where pictures go, command-line flags, saving a figure.

Not a lesson itself. Pictures go to ``examples/output/`` unless the environment variable
``MINIDL_EXAMPLES_OUTPUT`` (or a lesson's ``--output`` flag) names another folder; the tests use
that so they leave nothing behind. A notebook has no command line: ``MINIDL_LESSON_ARGS`` gives
the flags there (``MINIDL_LESSON_ARGS=--quick``), read before the command line's own.

In a Jupyter kernel (a notebook, or VS Code's cells) the pictures a lesson saves and the graphs
it draws are shown inline as well; as a script they are files, and only their paths are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
from pathlib import Path

import matplotlib
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("googlenet") is None:
    sys.exit(
        "The lessons import minidl and googlenet: install them first, from the repository's "
        f"root: python -m pip install -e {REPO}"
    )


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (a notebook, VS Code's interactive window), which can show
    pictures; False for a script and for IPython in a terminal, which cannot."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


IN_NOTEBOOK = _in_kernel()
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # no window: the pictures are files

import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_OUTPUT = REPO / "examples" / "output"


def parse_args(description: str, quick: bool = False, extra=None) -> argparse.Namespace:
    """The lesson's flags: ``$MINIDL_LESSON_ARGS`` (how a notebook gets ``--quick``), then the
    command line, whose flags win. ``parse_known_args`` because Jupyter passes its own arguments
    (and a lesson without ``--quick`` ignores it)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--output",
        default=os.environ.get("MINIDL_EXAMPLES_OUTPUT", str(DEFAULT_OUTPUT)),
        help="folder for the pictures (default: examples/output, or $MINIDL_EXAMPLES_OUTPUT)",
    )
    if quick:
        parser.add_argument("--quick", action="store_true", help="a shorter run (for the tests)")
    if extra is not None:
        extra(parser)
    argv = shlex.split(os.environ.get("MINIDL_LESSON_ARGS", "")) + sys.argv[1:]
    args, _ = parser.parse_known_args(argv)
    args.output = Path(args.output)
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def show_inline(path) -> None:
    """In a notebook, show the picture file ``path`` (PNG or SVG) inline, if it was written;
    as a script, nothing. The file itself is shown, so the notebook and the script agree, and
    whatever matplotlib backend the kernel uses."""
    path = Path(path)
    if not IN_NOTEBOOK or not path.is_file():
        return
    from IPython.display import SVG, Image, display

    display(SVG(filename=str(path)) if path.suffix.lower() == ".svg" else Image(filename=str(path)))


def save(fig, path: Path) -> None:
    """Save ``fig`` as a PNG, say where, and close it (in a notebook: show it as well).

    Returns nothing, so that a notebook does not echo a path after the picture."""
    from minidl.viz import save_figure

    save_figure(fig, path, bbox_inches="tight")
    print(f"  picture saved: {path}")
    show_inline(path)


def shown(path) -> None:
    """Say where the library's plotting helpers (``minidl.viz``) saved a picture; in a notebook,
    show it inline too (they close their figures once saved)."""
    print(f"  picture saved: {path}")
    show_inline(path)


class _Stop(Exception):
    """Ends a notebook's "run all" quietly: IPython shows no traceback for it."""

    def _render_traceback_(self):
        return []


def stop_here(message: str) -> None:
    """End the lesson early (no GPU, no PyTorch...), saying why: ``message`` should start with
    "SKIPPED:". As a script: exit status 0. In a notebook: stop the run without a traceback
    and without killing the kernel (``sys.exit`` there only prints a SystemExit)."""
    print(message)
    if IN_NOTEBOOK:
        raise _Stop(message)
    sys.exit(0)


def too_few_steps(
    steps: int, planned: int, budget_s: float, load: float | None = None, cores: int = 0
) -> str | None:
    """A plain warning when a lesson's training ran fewer than half its ``planned`` steps in its
    time budget, saying why (from the 1-minute ``load`` average, read now unless given, and the
    ``cores``); None when enough ran."""
    if steps >= planned / 2:
        return None
    cores = cores or os.cpu_count() or 1
    if load is None and hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
    if load is not None and load > cores + 0.5:
        why = (
            f"the machine is busy: its load average is {load:.1f} on {cores} cores, so other "
            "programs took turns on the cores this training needed"
        )
    else:
        why = "this machine trains more slowly than the lesson's defaults assume"
    return (
        f"WARNING: only {steps} of the {planned} planned training steps ran in the "
        f"{budget_s:g} s budget. That is too few to mean anything: the network has barely "
        "started to learn, so the accuracy, the predictions and the filters below are close to "
        f"an untrained network's (chance is 10%). Why: {why}. Give it more time (--budget "
        "SECONDS), close other programs, or run --quick for a smoke test."
    )


def render_graph(y, path: Path, verbose: bool = False, fallback: bool = True) -> None:
    """Draw the computation graph behind ``y`` as SVG with Graphviz; the .dot text is always
    written. Without Graphviz (and with ``fallback``) draw it with matplotlib instead, as
    ``<name>_graph.png``, and say how to get the SVG. In a notebook the drawing is shown inline."""
    from minidl import viz

    try:
        viz.render(y, path, verbose=verbose)
        print(f"  graph drawn: {path}")
        show_inline(path)
    except RuntimeError:
        print(
            f"  Graphviz's 'dot' program is not installed, so {path.name} was not drawn; its DOT "
            f"text is in {path.with_suffix('.dot').name}. For the SVG: install Graphviz (apt "
            "install graphviz, brew install graphviz or conda install graphviz) and run the "
            "lesson again, or paste the .dot text into an online Graphviz viewer."
        )
        if fallback:
            draw_graph(y, path.with_name(path.stem + ".png"))


def draw_graph(y, path: Path) -> None:
    """The graph behind ``y`` with matplotlib: one column per generation, Functions as orange
    ellipses, leaves (inputs, parameters) as blue boxes, an arrow per tensor passed on."""
    fns, seen, stack = [], set(), [y.creator]
    while stack:  # every Function that led to y
        fn = stack.pop()
        if id(fn) not in seen:
            seen.add(id(fn))
            fns.append(fn)
            stack.extend(x.creator for x in fn.inputs if x.creator is not None)
    nodes, edges = {}, []  # id -> [label, is_function, column]; (from id, to id)
    for fn in fns:
        nodes[id(fn)] = [fn.name, True, 2 * fn.generation + 1]
        for x in fn.inputs:
            source = id(x) if x.creator is None else id(x.creator)
            if x.creator is None:
                label = x.name or "x".join(map(str, x.shape))
                column = min(nodes.get(source, [0, 0, 2 * fn.generation])[2], 2 * fn.generation)
                nodes[source] = [label, False, column]
            edges.append((source, id(fn)))
    columns = sorted({n[2] for n in nodes.values()})
    place, users = {}, {}
    for a, b in edges:
        users.setdefault(a, []).append(b)
    for col in reversed(columns):  # right to left: each node level with the nodes it feeds,
        here = [k for k, n in nodes.items() if n[2] == col]  # one row apart at least
        wish = {k: np.mean([place[u][1] for u in users.get(k, [])] or [0]) for k in here}
        here.sort(key=lambda k: -wish[k])
        rows = [wish[here[0]] + (len(here) - 1) / 2]
        for k in here[1:]:
            rows.append(min(wish[k] + (len(here) - 1 - len(rows)) / 2, rows[-1] - 1))
        shift = (rows[0] + rows[-1]) / 2 - np.mean([wish[k] for k in here])
        for k, row in zip(here, rows):
            place[k] = (columns.index(col), row - shift)
    low, high = min(r for _, r in place.values()), max(r for _, r in place.values())
    height = high - low + 1
    fig, ax = plt.subplots(figsize=(1.5 * len(columns) + 1, 0.55 * height + 1.5))
    for a, b in edges:
        ax.annotate("", place[b], place[a], arrowprops=dict(arrowstyle="->", color="#555555",
                    shrinkA=14, shrinkB=14, lw=0.8))  # fmt: skip
    for k, (label, is_function, _) in nodes.items():
        style = dict(boxstyle="round4" if is_function else "square", ec="black")
        style["fc"] = "#ffb347" if is_function else "#cfe8ff"
        ax.text(*place[k], label, ha="center", va="center", fontsize=7, bbox=style)
    ax.set_xlim(-0.7, len(columns) - 0.3)
    ax.set_ylim(low - 0.7, high + 0.7)
    ax.axis("off")
    ax.set_title(f"The autograd graph behind {y.name or 'the output'}: {len(fns)} Functions "
                 "(orange), leaves in blue; forward runs left to right")  # fmt: skip
    save(fig, path)


CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def cifar10_candidates(explicit: str | None = None) -> list[Path]:
    """Where the lessons look for CIFAR-10 ("python version"), first match wins: ``--data``,
    ``$MINIDL_CIFAR10`` and the cache ``python googlenet.py train`` downloads to."""
    places = [explicit, os.environ.get("MINIDL_CIFAR10")]
    places.append(Path.home() / ".cache" / "minidl" / "cifar10")
    return [Path(p) for p in places if p]


def load_cifar10(explicit: str | None, n_train: int, n_test: int, seed: int = 0):
    """``(train_x, train_y, test_x, test_y, classes, source)``: uint8 NHWC images and labels.

    Real CIFAR-10 when found (a random subset of ``n_train`` training and ``n_test`` test
    images); otherwise a small generated stand-in, so that the lesson still runs end to end.
    """
    from minidl.data import CIFAR10

    rng = np.random.default_rng(seed)
    for place in cifar10_candidates(explicit):
        try:
            train, test = CIFAR10(place, train=True), CIFAR10(place, train=False)
        except (FileNotFoundError, ValueError):
            continue
        i = rng.permutation(len(train.targets))[:n_train]
        j = rng.permutation(len(test.targets))[:n_test]
        source = f"CIFAR-10 from {place}"
        return train.data[i], train.targets[i], test.data[j], test.targets[j], train.classes, source
    tx, ty = generated_images(n_train, rng)
    vx, vy = generated_images(n_test, rng)
    searched = ", ".join(str(p) for p in cifar10_candidates(explicit))
    source = (
        f"NO CIFAR-10 found (looked in {searched}); using generated stand-in images (a coloured "
        "square per class on noise). For the real thing: python googlenet.py train downloads it, "
        "or pass --data PATH"
    )
    return tx, ty, vx, vy, CIFAR10_CLASSES, source


def generated_images(n: int, rng):
    """A learnable stand-in for CIFAR-10: each class is a square of its own colour, at a random
    place on a noisy background. uint8 (n, 32, 32, 3) and labels (n,)."""
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 120, (n, 32, 32, 3)).astype(np.uint8)
    hues = plt.get_cmap("tab10")(np.arange(10))[:, :3] * 255
    for k, (label, (r, c)) in enumerate(zip(labels, rng.integers(2, 18, (n, 2)))):
        images[k, r : r + 12, c : c + 12] = hues[label].astype(np.uint8)
    return images, labels
