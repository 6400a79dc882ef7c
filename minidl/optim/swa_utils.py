"""Averaged weights (PyTorch's torch.optim.swa_utils): a copy of a model whose weights are a
running average of the model's along training.

The weights at the end of a run carry the noise of the last few steps; an average over many
steps is smoother and often evaluates better. ``AveragedModel(model)`` keeps the plain average
of every ``update_parameters(model)`` call (stochastic weight averaging, Izmailov et al. 2018);
with ``multi_avg_fn=get_ema_multi_avg_fn(decay)`` an exponential moving average, which forgets
old weights at the rate ``1 - decay`` a step (``1 / (1 - decay)`` steps is its memory)::

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    for x, y in loader:
        ...; optimizer.step()
        ema.update_parameters(model)
    evaluate(ema, test_loader)

``use_buffers=True`` averages the buffers too (batch norm's running statistics), so the
averaged model evaluates with statistics that go with its weights; False copies them from the
model at every update, as PyTorch does. ``update_bn(loader, model)`` computes batch norm's
running statistics afresh over a pass of ``loader``: for an average whose averaged statistics
do not go with its averaged weights, or a model trained on images of another size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import backend
from ..function import no_grad
from ..nn.module import Module
from ..nn.norm import BatchNorm2d
from ..tensor import Tensor

# in place: (averaged arrays, the model's arrays, how many updates the average holds)
MultiAvgFn = Callable[[list[Any], list[Any], int], None]


def get_ema_multi_avg_fn(decay: float = 0.999, *, warmup: bool = False) -> MultiAvgFn:
    """An exponential moving average: ``averaged = decay * averaged + (1 - decay) * current``
    for floating arrays; others (batch norm's step count) take the model's value.

    ``warmup`` (minidl's, not PyTorch's): the ``n``-th update uses ``min(decay, (1 + n) /
    (10 + n))``, TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule, so an average
    only ``n`` updates old remembers about the last ``n / 9`` of them rather than mostly the
    first weights (0.998 keeps 70% of them after 176 updates). The plain ``decay`` is reached
    after ``(10 * decay - 1) / (1 - decay)`` updates (4,490 for 0.998)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"get_ema_multi_avg_fn: decay must be in [0, 1], got {decay}")

    def ema_update(averaged: list[Any], current: list[Any], num_averaged: int) -> None:
        d = min(decay, (1 + num_averaged) / (10 + num_averaged)) if warmup else decay
        for a, c in zip(averaged, current):
            if np.issubdtype(a.dtype, np.floating):
                a += (1.0 - d) * (c - a)  # (a lerp: one temporary, not two)
            else:
                a[...] = c

    return ema_update


def get_swa_multi_avg_fn() -> MultiAvgFn:
    """The plain mean of every update: ``averaged += (current - averaged) / (n + 1)`` for
    floating arrays; others take the model's value."""

    def swa_update(averaged: list[Any], current: list[Any], num_averaged: int) -> None:
        for a, c in zip(averaged, current):
            if np.issubdtype(a.dtype, np.floating):
                a += (c - a) / (num_averaged + 1)
            else:
                a[...] = c

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` (its structure, device and weights now) whose weights
    ``update_parameters(model)`` moves towards the model's: the first update copies them, later
    ones apply ``multi_avg_fn`` (default: the plain mean, ``get_swa_multi_avg_fn``). Calling
    it runs the copy. Its state dict holds the copy's entries (``module.``...) and
    ``n_averaged``, the updates so far, so a checkpoint carries the average on."""

    def __init__(
        self,
        model: Module,
        multi_avg_fn: MultiAvgFn | None = None,
        use_buffers: bool = False,
    ):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a Module, got {type(model).__name__}")
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.grad = None  # (a copy of the gradients would be memory for nothing)
        xp = backend.get_array_module(next(model.parameters()).data)
        self.register_buffer("n_averaged", Tensor(xp.zeros((), dtype=np.int64)))
        self.multi_avg_fn = multi_avg_fn or get_swa_multi_avg_fn()
        self.use_buffers = use_buffers
        self._n: int | None = 0  # n_averaged, kept on the host

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def _averaged(self, model: Module) -> list[tuple[Tensor, Tensor]]:
        """(the copy's, the model's) tensors to average, in the same order, checked alike."""
        mine: list[Tensor] = list(self.module.parameters())
        theirs: list[Tensor] = list(model.parameters())
        if self.use_buffers:
            mine, theirs = list(self.module.buffers()) + mine, list(model.buffers()) + theirs
        if [a.shape for a in mine] != [c.shape for c in theirs]:
            raise ValueError(
                f"AveragedModel.update_parameters: model's {len(theirs)} tensors do not match "
                f"the averaged copy's {len(mine)} (another kind of model?)"
            )
        return list(zip(mine, theirs))

    def update_parameters(self, model: Module) -> None:
        """Moves the average towards ``model``'s weights (and buffers, with ``use_buffers``)."""
        pairs = self._averaged(model)
        if self._n is None:  # (read once: on a GPU each read of the buffer waits for it)
            self._n = int(backend.to_numpy(self.n_averaged.data))
        if self._n == 0:
            for a, c in pairs:
                a.data[...] = c.data
        else:
            self.multi_avg_fn([a.data for a, _ in pairs], [c.data for _, c in pairs], self._n)
        if not self.use_buffers:  # the buffers follow the model's
            for a, c in zip(self.module.buffers(), model.buffers()):
                a.data[...] = c.data
        self._n += 1
        self.n_averaged.data[...] = self._n

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        self._n = None  # n_averaged is read again at the next update
        return super().load_state_dict(state_dict, strict)


def update_bn(
    loader: Iterable[Any], model: Module, device: str | None = None, *, dropout: bool = True
) -> None:
    """Batch norm's running statistics recomputed over one pass of ``loader`` (PyTorch's
    ``update_bn``): each layer's statistics reset, then every batch (a Tensor, or the first item
    of a tuple or list: ``(x, y)`` pairs) run through ``model`` in training mode, each batch
    weighted alike (``momentum=None``, the cumulative average), then the momenta and the mode
    restored. ``device``: where each batch goes first. No graph is kept. A model without batch
    norm is left as it was. ``dropout=False`` (minidl's): only the batch-norm layers run in
    training mode, so no dropout mask is drawn and the random numbers a training run goes on
    with are left as they were."""
    layers = [m for m in model.modules() if isinstance(m, BatchNorm2d) and m.track_running_stats]
    if not layers:
        return
    was_training, momenta = model.training, [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train(dropout)
    for m in layers:
        m.train()
    try:
        with no_grad():
            for batch in loader:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x if device is None else x.to(device))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
