"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..backend import get_array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    """PyTorch's Adam, step t = 1, 2, ... (lambda the weight decay, an L2 penalty):

        g   = g_t + lambda * p
        m_t = beta1 * m_{t-1} + (1 - beta1) * g          (m_0 = 0)
        v_t = beta2 * v_{t-1} + (1 - beta2) * g^2        (v_0 = 0)
        (amsgrad: v_max = max(v_max, v_t), used instead of v_t below)
        p   = p - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    The two divisions by (1 - beta^t) are the bias corrections of the zero-initialised moments.
    Note eps is added *after* the bias correction of v, as PyTorch (the paper's form is the same).
    """

    decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(
                f"lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}"
            )
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], p: Any, g: Any, state: dict[str, Any]) -> None:
        xp = get_array_module(p)
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)
            state["exp_avg_sq"] = xp.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if self.decoupled:
                p *= 1 - lr * wd
            else:
                g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        bias1, bias2 = 1 - beta1**t, 1 - beta2**t
        denom = xp.sqrt(v)
        denom /= math.sqrt(bias2)
        denom += group["eps"]
        p -= (lr / bias1) * (m / denom)


class AdamW(Adam):
    """Adam with *decoupled* weight decay: before the Adam step,

        p = p * (1 - lr * lambda)

    and the gradient is left alone (no lambda * p in m and v), so the decay is not rescaled by
    the adaptive denominator. Default weight_decay 1e-2, as PyTorch.
    """

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
