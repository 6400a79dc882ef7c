"""What a model costs, layer by layer: output shapes, parameters and multiply-adds.

``profile(model, x)`` runs one forward pass (without recording a graph) and watches every module
that gets called: it wraps each module's ``forward`` for the duration of the pass and notes the
input and output shapes. Multiply-adds are then counted per module from those shapes, by a rule
for each layer that does them (convolutions and fully connected layers; pooling, normalisation
and activations are counted as zero, as in the GoogLeNet paper's Table 1). A module's count is the
sum over the layers inside it, so a whole Inception module gets one number.

The counts are **per input image** (divided by the batch size), so a batch of 1 is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nn
from .function import no_grad
from .tensor import Tensor


@dataclass
class LayerStats:
    """One module as seen during the pass (numbers per image; subtree totals)."""

    name: str  # dotted path in the model ("" for the model itself)
    module: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int  # parameters of this module and its children (each counted once)
    macs: int  # multiply-adds of this module and its children, per image
    children: list[str] = field(default_factory=list)


def layer_macs(module: nn.Module, input_shape: Sequence[int], output_shape: Sequence[int]) -> int:
    """Multiply-adds one image costs in ``module`` itself (not its children).

    Conv2d: every output element is a dot product of length in_channels * kh * kw.
    Linear: every output element is a dot product of length in_features.
    Everything else: 0 (comparisons, additions and divisions are not multiply-adds).
    """
    batch = max(int(input_shape[0]), 1)
    out_elements = int(np.prod(output_shape)) // batch
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return out_elements * module.in_channels * kh * kw
    if isinstance(module, nn.Linear):
        return out_elements * module.in_features
    return 0


def _shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, Tensor):
        return x.shape
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], Tensor):
        return x[0].shape  # named outputs (logits, aux...): the first is the main one
    return ()


def profile(model: nn.Module, *inputs: Tensor) -> dict[str, LayerStats]:
    """Run ``model(*inputs)`` under ``no_grad``; the modules called, by name, in call order.

    The model keeps its mode (call ``model.eval()`` first to leave training-only branches out).
    Modules never called (an auxiliary head in eval mode) do not appear.
    """
    seen: dict[str, LayerStats] = {}
    own_macs: dict[str, int] = {}
    stack: list[str] = []

    def watch(name: str, module: nn.Module) -> None:
        forward = module.forward

        def recorded(*args: Any, **kwargs: Any) -> Any:
            if stack and name not in seen[stack[-1]].children:
                seen[stack[-1]].children.append(name)
            stack.append(name)
            if name not in seen:
                seen[name] = LayerStats(name, module, _shape(args[0]) if args else (), (), 0, 0)
            try:
                out = forward(*args, **kwargs)
            finally:
                stack.pop()
            stats = seen[name]
            stats.output_shape = _shape(out)
            own_macs[name] = own_macs.get(name, 0) + layer_macs(
                module, stats.input_shape or (1,), stats.output_shape
            )
            return out

        object.__setattr__(module, "forward", recorded)  # an instance attribute shadows the method

    modules = list(model.named_modules())
    for name, module in modules:
        watch(name, module)
    try:
        with no_grad():
            model(*inputs)
    finally:
        for _, module in modules:
            module.__dict__.pop("forward", None)

    def total(name: str) -> int:
        stats = seen[name]
        stats.macs = own_macs.get(name, 0) + sum(total(child) for child in stats.children)
        return stats.macs

    for stats in seen.values():
        stats.params = sum(p.size for p in stats.module.parameters())
    total("")
    return seen


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A plain-text table: columns sized to fit, numbers right-aligned (``align`` 'l'/'r' per
    column overrides), a rule under the headers."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def justify(i: int, text: str, value: Any) -> str:
        right = align[i] == "r" if i < len(align) else isinstance(value, (int, float, np.integer))
        return text.rjust(widths[i]) if right else text.ljust(widths[i])

    lines = ["  ".join(h.ljust(w) for h, w in zip(cells[0], widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for raw, row in zip(rows, cells[1:]):
        lines.append("  ".join(justify(i, t, v) for i, (t, v) in enumerate(zip(row, raw))).rstrip())
    return "\n".join(lines)


def human(n: float) -> str:
    """1234 -> '1.2K', 1_582_671_872 -> '1.58G' (three significant digits)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))
