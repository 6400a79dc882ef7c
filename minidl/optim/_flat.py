"""The optimizers' fast path: one update of many parameters as a few operations on flat buffers.

The textbook update (``Optimizer._update``) is a formula on one parameter's arrays; an optimizer
step applies it parameter by parameter, about nine array operations each. GoogLeNet has 167
parameters, so that is ~1,500 operations a step: on a GPU ~1,500 kernel launches of a few
microseconds' work each, on a CPU ~1,500 small NumPy calls. Here the same formula runs once on
one long vector per (device, dtype): the parameters are views into one buffer, their gradients
are views into another (``Tensor.backward`` writes a leaf's first gradient into its view), and
the optimizer's state (momentum, Adam's moments) lives in flat buffers too, shown to
``state_dict`` as per-parameter views, so checkpoints are unchanged. PyTorch's ``foreach`` and
``fused`` optimizers do the same with multi-tensor kernels.

Elementwise arithmetic gives the same bits on a long vector as on its pieces, so both paths agree
exactly. Whenever the link breaks (``model.to(...)`` rebinds ``p.data``, a user assigns
``p.grad``, ``load_state_dict`` replaces the state), the affected group takes the textbook path
for that step and the buffers are rebuilt.
"""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..tensor import Tensor


class FlatParams:
    """Parameters of one (device, dtype), their gradients and optimizer state as flat buffers."""

    def __init__(self, params: list[Tensor]):
        self.params = params
        first = params[0].data
        xp = get_array_module(first)
        self.sizes = [p.data.size for p in params]
        total = sum(self.sizes)
        self.data = xp.empty(total, first.dtype)
        self.grad = xp.zeros(total, first.dtype)
        self.state: dict[str, Any] = {}  # flat arrays (momentum, moments) and scalars (step)
        self._shown_views: dict[str, tuple[Any, list[Any]]] = {}  # key -> (flat, its views)
        for p, view, grad in zip(params, self.views(self.data), self.views(self.grad)):
            view[...] = p.data
            p.data, p._flat = view, (view, grad)

    def intact(self) -> bool:
        """True when every parameter still lives in this buffer and has its gradient in it."""
        for p in self.params:
            flat, grad = p._flat, p.grad
            if flat is None or p.data is not flat[0] or grad is None or grad.data is not flat[1]:
                return False
        return True

    def views(self, flat: Any) -> list[Any]:
        """``flat`` (one value per element of the buffer) cut into the parameters' shapes."""
        out, offset = [], 0
        for p, n in zip(self.params, self.sizes):
            out.append(flat[offset : offset + n].reshape(p.shape))
            offset += n
        return out

    def gather_state(self, states: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The flat state the per-parameter ``states`` describe, or None if they cannot be one
        (different keys or step counts)."""
        keys = set(states[0])
        if any(set(s) != keys for s in states):
            return None
        if keys == set(self.state) and all(self._shown(states, key) for key in keys):
            return self.state
        return self._adopt(states, keys)

    def _shown(self, states: list[dict[str, Any]], key: str) -> bool:
        """True when every state's ``key`` is what ``scatter_state`` last put there."""
        shown = self._shown_views.get(key)
        if shown is None:  # a scalar (Adam's step count): equal everywhere
            return all(s[key] == self.state[key] for s in states)
        return all(s[key] is v for s, v in zip(states, shown[1]))

    def _adopt(self, states: list[dict[str, Any]], keys: set[str]) -> dict[str, Any] | None:
        """Per-parameter state from elsewhere (``load_state_dict``), copied into flat buffers."""
        xp = get_array_module(self.data)
        flat: dict[str, Any] = {}
        for key in keys:
            values = [s[key] for s in states]
            if all(_is_array(v) for v in values):
                flat[key] = xp.concatenate([v.reshape(-1) for v in values])
            elif all(v == values[0] for v in values):
                flat[key] = values[0]
            else:
                return None
        self.state, self._shown_views = flat, {}
        return flat

    def scatter_state(self, states: list[dict[str, Any]]) -> None:
        """Show the flat state in each parameter's state dict: views of arrays, scalars as is."""
        for key, flat in self.state.items():
            if not _is_array(flat):
                for s in states:
                    s[key] = flat
                continue
            shown = self._shown_views.get(key)
            if shown is None or shown[0] is not flat:  # a new buffer: cut it into views once
                shown = self._shown_views[key] = (flat, self.views(flat))
            for s, v in zip(states, shown[1]):
                s[key] = v


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and v.ndim > 0


def group_by_buffer(params: list[Tensor]) -> list[list[Tensor]]:
    """Parameters grouped by (array module, dtype), in order: one flat buffer each."""
    groups: dict[tuple[Any, Any], list[Tensor]] = {}
    for p in params:
        groups.setdefault((get_array_module(p.data), p.data.dtype), []).append(p)
    return list(groups.values())
