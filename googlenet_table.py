"""GoogLeNet's Table 1 (the paper's) computed from a live model, and compared with the paper.

``table1(model)`` runs one forward pass through ``minidl.summary.profile`` and turns what it saw
into the table's rows: one per stage, with the paper's columns (patch/stride, output size, depth,
the Inception channel counts) and the parameters and multiply-adds counted from the layers.
``summary(model)`` prints them with totals; for the paper's own variant (224x224, 1000 classes)
it puts the paper's figures beside the live count and marks where they differ by more than 1%.

``python googlenet.py summary --variant paper`` prints it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import minidl as md
from googlenet import ConvBlock, GoogLeNet, Inception
from minidl import nn
from minidl.summary import format_table, human, profile

# The paper's Table 1 (params, multiply-adds), printed beside the live count for comparison.
# The "convolution 3x3/1" row there is two layers (conv2, a 1x1 reduction, and conv3).
PAPER_TABLE1 = {
    "conv1": (2.7e3, 34e6),
    "conv2+conv3": (112e3, 360e6),
    "inception3a": (159e3, 128e6),
    "inception3b": (380e3, 304e6),
    "inception4a": (364e3, 73e6),
    "inception4b": (437e3, 88e6),
    "inception4c": (463e3, 100e6),
    "inception4d": (580e3, 119e6),
    "inception4e": (840e3, 170e6),
    "inception5a": (1072e3, 54e6),
    "inception5b": (1388e3, 71e6),
    "fc": (1000e3, 1e6),
}

TABLE1_COLUMNS = (
    "type", "patch/stride", "output", "depth", "#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce",
    "#5x5", "pool proj", "params", "ops",
)  # fmt: skip


def _pair_text(v: Any) -> str:
    a, b = (v, v) if isinstance(v, int) else tuple(v)
    return f"{a}x{b}"


def _output_text(shape: tuple[int, ...]) -> str:
    if len(shape) == 4:  # N x C x H x W -> the paper's H x W x C
        return f"{shape[2]}x{shape[3]}x{shape[1]}"
    return f"1x1x{shape[-1]}"


def table1(model: GoogLeNet, input_size: int = 224) -> list[dict[str, Any]]:
    """The rows of the paper's Table 1, computed from the live model by one forward pass.

    One row per stage the model runs in eval mode (the auxiliary heads are training-only and
    not rows). A 1x1 convolution directly followed by another convolution forms one row, as
    the paper's "convolution 3x3/1" (its 1x1 is the "#3x3 reduce"). Each row: ``name``, the
    table's columns, ``params`` and ``macs`` (ints, per image).
    """
    was_training = model.training
    model.eval()
    try:
        xp = md.backend.get_array_module(next(model.parameters()).data)
        x = md.Tensor(xp.zeros((1, 3, input_size, input_size), dtype=np.float32))
        stats = profile(model, x)
    finally:
        model.train(was_training)
    top = [s for name, s in stats.items() if name and "." not in name]
    rows: list[dict[str, Any]] = []
    for s in top:
        m, row = s.module, {"name": s.name, "params": s.params, "macs": s.macs, "depth": 0}
        row["output"] = _output_text(s.output_shape)
        if isinstance(m, ConvBlock):
            conv = m.conv
            previous = rows[-1] if rows else None
            if (
                previous is not None
                and previous.get("kernel") == (1, 1)
                and conv.kernel_size != (1, 1)
                and previous["out_channels"] == conv.in_channels
            ):  # the paper's "convolution 3x3/1": a 1x1 reduction, then the 3x3
                rows.pop()
                row["name"] = f"{previous['name']}+{s.name}"
                row["#3x3 reduce"] = previous["out_channels"]
                row["#3x3"] = conv.out_channels
                row["params"] += previous["params"]
                row["macs"] += previous["macs"]
                row["depth"] = 2
            else:
                row["depth"] = 1
            row["type"] = "convolution"
            row["patch/stride"] = f"{_pair_text(conv.kernel_size)}/{conv.stride[0]}"
            row["kernel"], row["out_channels"] = conv.kernel_size, conv.out_channels
        elif isinstance(m, Inception):
            row["type"] = f"inception ({s.name.removeprefix('inception')})"
            row["depth"] = 2
            row["#1x1"], row["#3x3 reduce"], row["#3x3"] = m.ch1x1, m.ch3x3red, m.ch3x3
            row["#5x5 reduce"], row["#5x5"], row["pool proj"] = m.ch5x5red, m.ch5x5, m.pool_proj
            if m.kernel5 != 5:
                row["type"] += f" [{m.kernel5}x{m.kernel5} in '5x5']"
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            row["type"] = "max pool" if isinstance(m, nn.MaxPool2d) else "avg pool"
            stride = m.stride if m.stride is not None else m.kernel_size
            stride = stride if isinstance(stride, int) else stride[0]
            row["patch/stride"] = f"{_pair_text(m.kernel_size)}/{stride}"
        elif isinstance(m, nn.AdaptiveAvgPool2d):  # global: the window is the whole input
            row["type"] = "avg pool"
            row["patch/stride"] = f"{s.input_shape[2]}x{s.input_shape[3]}/1"
        elif isinstance(m, nn.LocalResponseNorm):
            row["type"] = "local resp. norm"
        elif isinstance(m, nn.Dropout):
            row["type"] = f"dropout ({m.p:.0%})"
        elif isinstance(m, nn.Linear):
            row["type"], row["depth"] = "linear", 1
        else:
            row["type"] = type(m).__name__
        rows.append(row)
    for row in rows:
        row.pop("kernel", None)
        row.pop("out_channels", None)
    return rows


def summary(model: GoogLeNet, input_size: int = 224) -> str:
    """The paper's Table 1 for ``model`` as text, with totals; for the paper variant at
    224x224 with 1000 classes, the paper's own params and ops beside the live count."""
    rows = table1(model, input_size)
    compare = (
        model.variant == "paper"
        and input_size == 224
        and model.num_classes == 1000
        and model.width == 1
    )
    headers = list(TABLE1_COLUMNS) + (["paper params", "paper ops"] if compare else [])
    body, flagged = [], False
    for row in rows:
        cells = [row.get(c, "") for c in TABLE1_COLUMNS[:-2]]
        cells += [
            human(row["params"]) if row["params"] else "",
            human(row["macs"]) if row["macs"] else "",
        ]
        if compare:
            paper = PAPER_TABLE1.get(row["name"])
            if paper is None:
                cells += ["", ""]
            else:
                marks = []
                for live, ref in ((row["params"], paper[0]), (row["macs"], paper[1])):
                    off = abs(live - ref) > 0.01 * ref
                    flagged |= off
                    marks.append(human(ref) + (" *" if off else ""))
                cells += marks
        body.append(cells)
    params_total = model.num_parameters()
    aux = sum(m.num_parameters() for m in (model.aux1, model.aux2) if m is not None)
    macs_total = sum(r["macs"] for r in rows)
    title = (
        f"GoogLeNet, variant {model.variant!r}, width {model.width:g}, '5x5' kernel "
        f"{model.kernel5}x{model.kernel5}, input {input_size}x{input_size}x3, "
        f"{model.num_classes} classes"
    )
    lines = [title, "", format_table(headers, body, align="llllrrrrrrrr" + "rr" * compare), ""]
    lines.append(
        f"total: {params_total - aux:,} parameters, {macs_total:,} multiply-adds per image "
        f"({human(macs_total)})"
    )
    if aux:
        lines.append(
            f"auxiliary heads (training only): {aux:,} more parameters ({params_total:,} with them)"
        )
    if flagged:
        lines.append(
            "* differs from the paper's Table 1 by more than 1%: its params column is rounded "
            "and partly off (conv1, 4c, 5a), its 34M ops for conv1 cannot be reproduced from the "
            "layer (7x7x3 x 64 x 112x112 = 118M) and 5a's 54M should read 51M."
        )
    return "\n".join(lines)
