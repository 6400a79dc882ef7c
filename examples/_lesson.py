"""Small helpers the lessons share: where pictures go, command-line flags, saving a figure.

Not a lesson itself. Pictures go to ``examples/output/`` unless the environment variable
``MINIDL_EXAMPLES_OUTPUT`` (or a lesson's ``--output`` flag) names another folder; the tests use
that so they leave nothing behind.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import matplotlib

REPO = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("minidl") is None:  # not installed: use the checkout next door
    sys.path.insert(0, str(REPO))

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # no window: the pictures are files

import matplotlib.pyplot as plt  # noqa: E402

DEFAULT_OUTPUT = REPO / "examples" / "output"


def parse_args(description: str, quick: bool = False, extra=None) -> argparse.Namespace:
    """The lesson's flags. ``parse_known_args`` because Jupyter passes its own arguments."""
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
    args, _ = parser.parse_known_args()
    args.output = Path(args.output)
    args.output.mkdir(parents=True, exist_ok=True)
    return args


def save(fig, path: Path) -> Path:
    """Save ``fig`` as a PNG, say where, and close it (in a notebook: show it as well)."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"  picture saved: {path}")
    if IN_NOTEBOOK:
        plt.show()
    plt.close(fig)
    return path


def render_graph(y, path: Path, verbose: bool = False) -> None:
    """Draw the computation graph behind ``y`` as SVG with Graphviz; the .dot text is always
    written, so without Graphviz the graph can still be pasted into an online DOT viewer."""
    from minidl import viz

    try:
        viz.render(y, path, verbose=verbose)
        print(f"  graph drawn: {path}")
    except RuntimeError as err:
        print(f"  {err}")
