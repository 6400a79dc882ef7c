"""Optimizer base class: parameter groups, per-parameter state, state_dict for exact resuming."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .. import backend
from ..backend import get_array_module
from ..function import no_grad
from ..tensor import Tensor
from ._flat import FlatParams, group_by_buffer


class Optimizer:
    """Holds ``param_groups`` (dicts with "params" and hyper-parameters such as "lr") and
    ``state`` (per parameter, keyed by ``id(param)``).

    ``params`` is an iterable of Parameters or of dicts ``{"params": [...], "lr": ...}`` whose
    missing entries take the ``defaults``. A schedule changes ``group["lr"]`` between steps.
    Subclasses implement ``_update(group, param, grad, state)`` on raw arrays, in place: the
    textbook formula for one parameter. ``step`` applies it once to each group's parameters laid
    end to end in flat buffers (``_flat``: the parameters become views into one array per device
    and dtype), and parameter by parameter where that layout was broken.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        self._flat: list[list[FlatParams]] = []  # per group: its parameters' flat buffers
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        group = dict(group)
        group["params"] = list(group["params"])
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer params must be Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(
                    f"optimizer got a non-leaf tensor of shape {p.shape} (the result of an op); "
                    f"pass parameters, e.g. model.parameters()"
                )
        known = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in known for p in group["params"]):
            raise ValueError("a parameter appears in more than one parameter group")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        self.param_groups.append(group)
        self._flat.append([FlatParams(ps) for ps in group_by_buffer(group["params"])])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``p.grad = None``) of every parameter, or zero them in place when
        ``set_to_none=False``. Frozen parameters (requires_grad=False) never get one."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self) -> None:
        """One update of every parameter that has a gradient (in place, recording no graph)."""
        with no_grad():
            for i, group in enumerate(self.param_groups):
                relaid = False
                for flat in self._flat[i]:
                    states = [self.state.setdefault(id(p), {}) for p in flat.params]
                    state = flat.gather_state(states) if flat.intact() else None
                    if state is not None:  # the fast path: the formula once, on flat buffers
                        self._update(group, flat.data, flat.grad, state)
                        flat.scatter_state(states)
                        continue
                    for p, s in zip(flat.params, states):  # the textbook: one by one
                        if p.grad is not None:
                            self._update(group, p.data, p.grad.data, s)
                        elif not s:
                            del self.state[id(p)]
                    relaid |= any(p._flat is None or p.data is not p._flat[0] for p in flat.params)
                if relaid:  # p.data was replaced (model.to(...)): lay the new arrays out again
                    self._flat[i] = [FlatParams(ps) for ps in group_by_buffer(group["params"])]

    def _update(self, group: dict[str, Any], p: Any, g: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, as
        PyTorch: parameters are numbered in group order; state arrays are copies."""
        index = {id(p): i for i, p in enumerate(self._all_params())}
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {
            index[pid]: {k: _copy(v) for k, v in s.items()}
            for pid, s in self.state.items()
            if pid in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` (from ``md.load`` too);
        state arrays are copied to each parameter's device and floating dtype."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"load_state_dict: the saved optimizer has {len(groups)} parameter groups, this "
                f"one has {len(self.param_groups)}"
            )
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(
                    f"load_state_dict: group {i} has {len(saved['params'])} parameters saved, "
                    f"{len(mine['params'])} here"
                )
        params = self._all_params()
        state = {}
        for key, s in state_dict["state"].items():
            p = params[int(key)]
            for name, v in s.items():
                shape = tuple(getattr(v, "shape", ()))
                if shape and shape != p.shape:
                    raise ValueError(
                        f"load_state_dict: state {name!r} of parameter {key} has shape {shape}, "
                        f"but that parameter has shape {p.shape}: was it saved from a model "
                        f"with other layer sizes?"
                    )
            state[id(p)] = {k: _to_param(v, p) for k, v in s.items()}
        self.state = state
        for saved, mine in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) and k == "betas" else copy.deepcopy(v)

    def _all_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _copy(v: Any) -> Any:
    return v.copy() if hasattr(v, "shape") and hasattr(v, "dtype") else v


def _to_param(v: Any, p: Tensor) -> Any:
    if isinstance(v, Tensor):
        v = v.data
    if not (hasattr(v, "shape") and hasattr(v, "dtype")):
        return v
    xp = get_array_module(p.data)
    v = backend.to_device(v, p.device)
    return xp.array(v, dtype=p.dtype if v.dtype.kind == "f" else v.dtype, copy=True)
