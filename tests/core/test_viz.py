"""The computation graph as DOT text, the message when Graphviz is missing, and a figure that
fails to draw leaving no file behind."""

from __future__ import annotations

import os
import shutil

import pytest

import minidl as md
from minidl import viz
from minidl.viz import save_figure


def _graph():
    x = md.tensor([[1.0, 2.0]], requires_grad=True)
    w = md.tensor([[3.0], [4.0]], requires_grad=True)
    x.name = "x"
    return md.F.relu(x @ w).sum()


def test_to_dot_shows_ops_shapes_and_dtypes():
    dot = viz.to_dot(_graph())
    assert dot.startswith("digraph")
    for text in ("MatMul", "ReLU", "Sum", "1x2 float32", "2x1 float32", "x\\n"):
        assert text in dot
    # x -> MatMul, w -> MatMul, MatMul -> h, h -> ReLU, ReLU -> r, r -> Sum, Sum -> y
    assert dot.count("->") == 7


def test_render_without_graphviz_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz"):
        viz.render(_graph(), tmp_path / "g.svg")
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_render_writes_svg(tmp_path):
    out = viz.render(_graph(), tmp_path / "g.svg")
    assert open(out).read().lstrip().startswith(("<?xml", "<svg"))


def test_plot_curves_writes_png(tmp_path):
    path = viz.plot_curves(
        {"epoch": [1, 2], "train_loss": [2.0, 1.5], "test_acc": [0.3, 0.4]}, tmp_path / "c.png"
    )
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_save_figure_leaves_nothing_when_drawing_fails(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no"))
    with pytest.raises(RuntimeError):
        save_figure(fig, tmp_path / "f.png")
    assert os.listdir(tmp_path) == []
