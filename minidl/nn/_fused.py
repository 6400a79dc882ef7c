"""Fused paths the layers take to save passes over memory: the same values, less work.

Kept in this one place, beside the modules whose arithmetic they merge, so that the public layers
and ``F`` keep PyTorch's signatures and a model calls each path in one line.

- ``batch_norm_relu(bn, x)``: ``relu(bn(x))`` as one op (``minidl.ops.norm.batch_norm_relu``):
  the normalised values are written once and ReLU-ed in place, and backward masks the gradient
  on the way in, instead of a second op reading and writing the whole activation again.
- ``stacked_1x1(units, x)``: several ``conv 1x1 -> [batch norm] -> ReLU`` units that read the
  same ``x`` (an Inception module's branch1 and the reductions of branches 2 and 3) computed as
  one convolution with their weights stacked, one batch norm over all channels with their
  parameters and running statistics stacked, then split on channels. ``x`` is read by one
  matrix product instead of three, and in backward its gradient from the three comes out of one
  product instead of three that are then summed. Batch norm treats every channel on its own, so
  the stacked arithmetic is the modules' own; the running statistics are written back to each.
- ``conv_block_into(unit, x, out)`` and ``concat_slots``: a ``conv -> batch norm -> ReLU`` unit
  whose output is written straight into its channel slice of a concatenation made by
  ``channel_slots`` (an Inception module's output), so that the concatenation copies only the
  branches that could not be written in place, and the block's output is stored once, not twice
  (once per branch, saved for backward, and again concatenated).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backend import get_array_module
from ..function import is_grad_enabled
from ..ops.activation import relu
from ..ops.conv import conv2d
from ..ops.norm import batch_norm_relu as _batch_norm_relu
from ..ops.shape import channel_slots, concat, concat_slots, split
from ..tensor import Tensor
from .module import Module
from .norm import BatchNorm2d

__all__ = [
    "batch_norm_relu",
    "can_stack",
    "channel_slots",
    "concat_slots",
    "conv_block_into",
    "stacked_1x1",
]


def batch_norm_relu(bn: BatchNorm2d, x: Tensor) -> Tensor:
    """``relu(bn(x))`` in one op, with ``bn``'s bookkeeping (running statistics, batch count)."""
    bn._check_input(x)
    return _batch_norm_relu(x, **bn._batch_norm_args())


def conv_block_into(unit: Module, x: Tensor, out) -> Tensor:
    """``unit(x)`` for a ``conv -> batch norm -> ReLU`` unit (``.conv``, ``.bn``), its output
    written into the array ``out`` (a slice from ``channel_slots``). A unit without batch norm, or
    not fused, is simply called: the concatenation then copies its output."""
    if unit.bn is None or not getattr(unit, "fused", False):
        return unit(x)
    bn = unit.bn
    bn._check_input(y := unit.conv(x))
    return _batch_norm_relu(y, **bn._batch_norm_args(), out=out)


def can_stack(units: Sequence[Module]) -> bool:
    """Whether ``stacked_1x1`` applies: in training with a graph (without one the units run one
    by one, so that hooks and ``minidl.summary.profile`` see each of them), every unit a 1x1
    stride-1 convolution without padding, and all normalised alike (batch norm with one eps and
    a fixed momentum, or none)."""
    if not (is_grad_enabled() and all(u.training for u in units)):
        return False
    convs, bns = [u.conv for u in units], [u.bn for u in units]
    if any(c.kernel_size != (1, 1) or c.stride != (1, 1) or c.padding != (0, 0) for c in convs):
        return False
    if (convs[0].bias is None) != all(c.bias is None for c in convs):
        return False
    if bns[0] is None:
        return all(bn is None for bn in bns)
    return all(
        bn is not None
        and bn.affine
        and bn.track_running_stats
        and bn.momentum is not None
        and bn.num_features == c.out_channels
        and (bn.eps, bn.momentum) == (bns[0].eps, bns[0].momentum)
        for bn, c in zip(bns, convs)
    )


def stacked_1x1(units: Sequence[Module], x: Tensor) -> tuple[Tensor, ...]:
    """``[relu(u.bn(u.conv(x))) for u in units]`` (``u.bn`` may be None) as one convolution and
    one batch norm; check ``can_stack(units)`` first."""
    convs = [u.conv for u in units]
    weight = concat([c.weight for c in convs], axis=0)
    bias = None if convs[0].bias is None else concat([c.bias for c in convs], axis=0)
    y = conv2d(x, weight, bias)
    bns = [u.bn for u in units]
    y = relu(y) if bns[0] is None else _stacked_batch_norm_relu(bns, y)
    return split(y, [c.out_channels for c in convs], axis=1)


def _stacked_batch_norm_relu(bns: Sequence[BatchNorm2d], y: Tensor) -> Tensor:
    """relu(bn_k(y_k)) for the channel groups y_k of ``y`` (training mode), with the modules'
    parameters and running statistics stacked; the statistics are then written back."""
    args = [bn._batch_norm_args() for bn in bns]  # counts the batch in each module
    xp = get_array_module(y.data)
    mean, var = (xp.concatenate([a[n] for a in args]) for n in ("running_mean", "running_var"))
    y = _batch_norm_relu(
        y,
        mean,
        var,
        concat([a["weight"] for a in args]),
        concat([a["bias"] for a in args]),
        training=True,
        momentum=args[0]["momentum"],
        eps=args[0]["eps"],
    )
    start = 0
    for bn in bns:
        stop = start + bn.num_features
        bn.running_mean.data[...] = mean[start:stop]
        bn.running_var.data[...] = var[start:stop]
        start = stop
    return y
