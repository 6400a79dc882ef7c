"""GoogLeNet's Table 1 (the paper's) computed from a live model, and compared with the paper.

``table1(model)`` runs one forward pass through ``minidl.summary.profile`` and turns what it saw
into the table's rows: one per stage, with the paper's columns (patch/stride, output size, depth,
the Inception channel counts) and the parameters and multiply-adds counted from the layers.
``summary(model)`` prints them with totals, within 100 columns; for the paper's own variant
(224x224, 1000 classes) it then compares the paper's parameter and multiply-add figures with the
live count (``paper_comparison``) and says why each row that differs does.

``python googlenet.py summary --variant paper`` prints it.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

import minidl as md
from googlenet import ConvBlock, GoogLeNet, Inception
from minidl import nn
from minidl.summary import human, profile

# The paper's Table 1 (params, multiply-adds), as it prints them: params in K, ops in M.
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

# The paper's params column, recounted: it counts a layer's weights alone (no biases), in K of
# 1024. That reading reproduces it within 1% on 7 of its 12 rows (conv2+conv3's 114,688 weights
# are 112.0K, fc's 1,024,000 are 1000.0K) and its total within 0.5%. K of 1000 (minidl's own
# column, which counts the biases too) leaves every Inception row 2-10% off, which rounding of
# three digits cannot explain.
PARAMS_UNIT = 1024

# conv1's figures fit a depthwise-separable 7x7 convolution: each RGB channel filtered by
# SEPARABLE_MULTIPLIER 7x7 kernels of its own, then a 1x1 convolution to 64 channels.
SEPARABLE_MULTIPLIER = 8

# Why the other rows differ from the recount by more than 1% (beyond the paper's rounding): a
# note per row, its text in ``_gap_notes``. ``summary`` marks a row it has no note for with "?".
PAPER_GAPS = {
    "conv1": "a",
    "inception4c": "b",
    "inception4d": "b",
    "inception5b": "b",
    "inception5a": "c",
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
    table's columns, ``params`` and ``macs`` (ints, per image) and ``weights`` (the params
    without biases and batch norm).
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
        row["weights"] = sum(p.size for p in m.parameters() if p.ndim >= 2)  # no biases, no BN
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
                row["weights"] += previous["weights"]
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


# Table 1's columns as printed: (top line, bottom line) of each header, so that it fits 100
# columns, and the alignment of each column.
_HEADERS = (
    ("", "type"), ("patch/", "stride"), ("", "output"), ("", "depth"), ("", "#1x1"),
    ("#3x3", "reduce"), ("", "#3x3"), ("#5x5", "reduce"), ("", "#5x5"), ("pool", "proj"),
    ("", "params"), ("", "ops"),
)  # fmt: skip
_ALIGN = "llllrrrrrrrr"


def _two_line_table(headers: list[tuple[str, str]], body: list[list[str]], align: str) -> str:
    """A plain-text table whose headers take two lines (``(top, bottom)`` each), columns sized
    to fit, two spaces apart, a rule under the headers."""
    widths = [
        max(len(top), len(bottom), *(len(row[i]) for row in body))
        for i, (top, bottom) in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)
        ).rstrip()

    lines = [line([h[0] for h in headers]), line([h[1] for h in headers])]
    lines.append("  ".join("-" * w for w in widths))
    lines += [line(row) for row in body]
    return "\n".join(lines).lstrip("\n")


def _paper_figure(value: float, unit: float, suffix: str) -> tuple[str, float]:
    """The paper's figure as it prints it ("2.7K", "1072K", "34M") and half its last digit (how
    far rounding can move it)."""
    text = f"{value / unit:g}"
    decimals = len(text.partition(".")[2])
    return text + suffix, 0.5 * unit * 10.0**-decimals


def paper_comparison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``table1`` (paper variant, 224x224) that the paper gives figures for, each
    with the paper's params and ops (``paper_params``, ``paper_ops``, as printed), minidl's
    ``recount`` of the params as the paper counts them (weights only, in K of 1024), whether
    each figure is further off than 1% and the paper's rounding (``params_off``, ``ops_off``)
    and the row's ``note`` (a letter of ``_gap_notes``, "?" when a gap has none, "" when none
    is off)."""
    out = []
    for row in rows:
        if row["name"] not in PAPER_TABLE1:
            continue
        paper_params, paper_ops = PAPER_TABLE1[row["name"]]
        entry = {"name": row["name"], "params": row["params"], "macs": row["macs"]}
        entry["recount"] = row["weights"] / PARAMS_UNIT * 1e3  # in the paper's units, x 1000
        entry["paper_params"], params_half = _paper_figure(paper_params, 1e3, "K")
        entry["paper_ops"], ops_half = _paper_figure(paper_ops, 1e6, "M")
        for key, live, paper, half in (
            ("params_off", entry["recount"], paper_params, params_half),
            ("ops_off", row["macs"], paper_ops, ops_half),
        ):
            entry[key] = abs(live - paper) > max(0.01 * paper, half)
        off = entry["params_off"] or entry["ops_off"]
        entry["note"] = PAPER_GAPS.get(row["name"], "?") if off else ""
        out.append(entry)
    return out


def _gap_notes(rows: list[dict[str, Any]], compared: list[dict[str, Any]]) -> dict[str, str]:
    """What each note letter says, its figures computed from the rows."""
    by_name = {r["name"]: r for r in rows}
    conv1 = by_name["conv1"]
    k, cin, m = int(conv1["patch/stride"].split("x")[0]), 3, SEPARABLE_MULTIPLIER
    hw, _, cout = (int(v) for v in conv1["output"].split("x"))
    separable = k * k * cin * m + cin * m * cout
    modules = [r for r in rows if r["type"].startswith("inception")]
    biases = [(r["params"] - r["weights"]) / r["weights"] for r in modules]
    three = [(25 - 9) * r["#5x5 reduce"] * r["#5x5"] / r["weights"] for r in modules]
    odd = [c for c in compared if c["note"] == "b"]
    gaps = [1 - PAPER_TABLE1[c["name"]][0] / c["recount"] for c in odd]
    notes = {
        "a": (
            f"conv1: 2.7K and 34M are the figures of a depthwise-separable {k}x{k} convolution "
            f"({m} {k}x{k} filters per RGB channel, then a 1x1 to {cout}: {k}x{k}x{cin}x{m} + "
            f"{cin * m}x{cout} = {separable:,} weights, x {hw}x{hw} positions = "
            f"{separable * hw * hw / 1e6:.1f}M multiply-adds), not of the plain {k}x{k} "
            f"convolution that Figure 3 draws and this model has ({conv1['weights']:,} weights, "
            f"{human(conv1['macs'])})."
        ),
        "b": (
            f"{', '.join(c['name'].removeprefix('inception') for c in odd)}: the paper's "
            f"figure is {min(gaps):.1%} to {max(gaps):.1%} below the count of their weights, "
            f"and no other count reproduces it: biases add {min(biases):.1%} to "
            f'{max(biases):.1%}, a 3x3 kernel in the "5x5" branch takes {min(three):.0%} to '
            f"{max(three):.0%} off every module (breaking the rows that fit). Their ops agree "
            "with the channel counts, so these params figures are the odd ones."
        ),
    }
    if "inception5a" in by_name:
        paper_params, paper_ops = PAPER_TABLE1["inception5a"]
        size = int(by_name["inception5a"]["output"].split("x")[0])
        implied = paper_params / 1e3 * PARAMS_UNIT * size * size
        notes["c"] = (
            f"5a: both of the paper's figures are above the count, and agree with each other: "
            f"{paper_params / 1e3:g}K x {PARAMS_UNIT} weights x {size}x{size} positions = "
            f"{implied / 1e6:.1f}M multiply-adds, printed {paper_ops / 1e6:g}M. They describe a "
            "larger module than the channel counts the same row gives."
        )
    return notes


def _wrapped(first: str, text: str, width: int = 99) -> list[str]:
    """``text`` wrapped to ``width`` columns, ``first`` before its first line, the others
    indented as far."""
    indent = " " * len(first)
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False
    )


def _comparison_text(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison with the paper's figures, its totals and the notes, as lines."""
    compared = paper_comparison(rows)
    body = []
    for c in compared:
        body.append([
            c["name"], human(c["params"]), f"{c['recount'] / 1e3:.1f}K",
            c["paper_params"] + (" *" if c["params_off"] else ""), human(c["macs"]),
            c["paper_ops"] + (" *" if c["ops_off"] else ""), c["note"],
        ])  # fmt: skip
    paper_params = sum(PAPER_TABLE1[c["name"]][0] for c in compared)
    paper_ops = sum(PAPER_TABLE1[c["name"]][1] for c in compared)
    body.append([
        "total", f"{sum(c['params'] for c in compared):,}",
        f"{sum(c['recount'] for c in compared) / 1e3:.1f}K", f"{paper_params / 1e3:.1f}K",
        human(sum(c["macs"] for c in compared)), f"{paper_ops / 1e6:g}M", "",
    ])  # fmt: skip
    headers = [
        ("", "row"), ("minidl", "params"), ("weights", f"/ {PARAMS_UNIT}"), ("paper", "params"),
        ("minidl", "ops"), ("", "paper ops"), ("", "why"),
    ]  # fmt: skip
    intro = (
        "The paper's own figures beside minidl's. minidl's params count the biases too, in K of "
        f"1000; 'weights / {PARAMS_UNIT}' counts as the paper's column does (weights alone, in K "
        f"of {PARAMS_UNIT}). * more than 1% apart, beyond the paper's rounding; 'why' names the "
        "note below."
    )
    lines = [*_wrapped("", intro), "", _two_line_table(headers, body, "lrrrrrl"), ""]
    notes = _gap_notes(rows, compared)
    for letter in sorted({c["note"] for c in compared} - {""}):
        lines += _wrapped(f"{letter}  ", notes.get(letter, "no explanation found yet."))
    return lines


def summary(model: GoogLeNet, input_size: int = 224) -> str:
    """The paper's Table 1 for ``model`` as text (within 100 columns), with totals; for the
    paper variant at 224x224 with 1000 classes, the paper's own params and ops beside the live
    count, with why each row that differs does (``paper_comparison``)."""
    rows = table1(model, input_size)
    compare = (
        model.variant == "paper"
        and input_size == 224
        and model.num_classes == 1000
        and model.width == 1
    )
    body = []
    for row in rows:
        cells = [str(row.get(c, "")) for c in TABLE1_COLUMNS[:-2]]
        cells += [
            human(row["params"]) if row["params"] else "",
            human(row["macs"]) if row["macs"] else "",
        ]
        body.append(cells)
    params_total = model.num_parameters()
    aux = sum(m.num_parameters() for m in (model.aux1, model.aux2) if m is not None)
    macs_total = sum(r["macs"] for r in rows)
    title = (
        f"GoogLeNet, variant {model.variant!r}, width {model.width:g}, '5x5' kernel "
        f"{model.kernel5}x{model.kernel5}, input {input_size}x{input_size}x3, "
        f"{model.num_classes} classes"
    )
    lines = [title, "", _two_line_table(list(_HEADERS), body, _ALIGN), ""]
    lines.append(
        f"total: {params_total - aux:,} parameters, {macs_total:,} multiply-adds per image "
        f"({human(macs_total)})"
    )
    if aux:
        lines.append(
            f"auxiliary heads (training only): {aux:,} more parameters ({params_total:,} with them)"
        )
    if compare:
        lines += ["", *_comparison_text(rows)]
    return "\n".join(lines)
