"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .optimizer import Optimizer


class SGD(Optimizer):
    """PyTorch's SGD, step t (g_t the gradient, p the parameter, mu the momentum, tau the
    dampening, lambda the weight decay):

        g   = g_t + lambda * p                      (L2 penalty folded into the gradient)
        b_t = g                       if t == 1      (momentum buffer, when mu != 0)
        b_t = mu * b_{t-1} + (1 - tau) * g   otherwise
        g   = g + mu * b_t            if nesterov,   else g = b_t
        p   = p - lr * g

    lr multiplies the buffer when it is applied (Sutskever et al. accumulate lr inside the
    buffer); the two forms agree while lr is constant.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ):
        if lr < 0:
            raise ValueError(f"SGD: lr must be >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], p: Any, g: Any, state: dict[str, Any]) -> None:
        wd, mu = group["weight_decay"], group["momentum"]
        if wd != 0:
            g = g + wd * p
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= mu
                buf += (1 - group["dampening"]) * g
            g = g + mu * buf if group["nesterov"] else buf
        p -= group["lr"] * g
