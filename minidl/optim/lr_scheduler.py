"""Learning-rate schedules: they set ``group["lr"]`` of an optimizer's parameter groups.

Call ``scheduler.step()`` once per epoch or once per batch, whichever unit the schedule's lengths
are counted in, *after* ``optimizer.step()``. Each schedule is a closed-form function of the
step count ``last_epoch`` and the groups' initial learning rates, so ``state_dict()`` /
``load_state_dict()`` resume it exactly. Construction applies the step-0 learning rate.
"""

from __future__ import annotations

import math
from typing import Any

from .optimizer import Optimizer


class LRScheduler:
    """Base: subclasses define ``lr_at(base_lr, step)``, or ``lrs_at(step)`` for all groups at
    once (and may adjust momentum)."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"expected an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            if last_epoch == -1:
                group["initial_lr"] = group["lr"]
            elif "initial_lr" not in group:
                raise KeyError("initial_lr not set in a param group; resuming needs last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one step (epoch or batch) and set each group's lr."""
        self.last_epoch += 1
        self._apply()

    def set_step(self, step: int) -> None:
        """Jump to step ``step`` and set each group's lr: a budgeted run places its schedule at
        the fraction of the run done (``minidl.train.budget``), not one step per batch."""
        self.last_epoch = step
        self._apply()

    def lrs_at(self, step: int) -> list[float]:
        """Each parameter group's lr at ``step``: ``lr_at`` of the group's initial lr."""
        return [self.lr_at(base, step) for base in self.base_lrs]

    def _apply(self) -> None:
        """Set the groups' hyper-parameters for step ``last_epoch``."""
        for group, lr in zip(self.optimizer.param_groups, self.lrs_at(self.last_epoch)):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule and re-apply its current lr to the optimizer, so resuming does
        not depend on whether the optimizer's state was loaded before or after (unlike
        PyTorch, where a schedule built after ``optimizer.load_state_dict`` resets the lr)."""
        self.__dict__.update(state_dict)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = base
        self._apply()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (step // step_size).

    GoogLeNet's "decrease the learning rate by 4% every 8 epochs" is
    ``StepLR(optimizer, step_size=8, gamma=0.96)`` stepped per epoch.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch=-1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** (step // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2 for step <= T_max.

    The closed form of PyTorch's schedule (which it computes recursively; identical up to
    rounding). Past T_max the cosine continues, going back up, as PyTorch's closed form does.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch=-1):
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, step: int) -> float:
        return (
            self.eta_min
            + (base_lr - self.eta_min) * (1 + math.cos(math.pi * step / self.T_max)) / 2
        )


class WarmupCosineLR(LRScheduler):
    """Linear warm-up then cosine decay, usually stepped per batch:

    lr = base_lr * (step + 1) / warmup_steps                       for step < warmup_steps
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * s)) / 2     after, with
    s  = min(1, (step - warmup_steps) / (total_steps - warmup_steps))
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ):
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"WarmupCosineLR: need 0 <= warmup_steps < total_steps, got {warmup_steps} and "
                f"{total_steps}"
            )
        self.warmup_steps, self.total_steps, self.eta_min = warmup_steps, total_steps, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, base_lr: float, step: int) -> float:
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        s = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * s)) / 2


class OneCycleLR(LRScheduler):
    """PyTorch's OneCycleLR (Smith & Topin, 2018), stepped once per batch for ``total_steps``.

    lr rises from max_lr / div_factor to max_lr over the first ``pct_start`` of the steps, then
    falls to max_lr / div_factor / final_div_factor, each phase a cosine (or linear) ramp
    between its end points. With ``cycle_momentum`` the momentum (SGD's ``momentum``, Adam's
    beta1) moves the opposite way between max_momentum and base_momentum.
    ``max_lr`` replaces the optimizer's lr: one value for every parameter group, or a list with
    one per group (as in PyTorch), each group's cycle then scaled to its own peak.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float] | tuple[float, ...],
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        last_epoch: int = -1,
    ):
        if total_steps < 2:
            raise ValueError(f"OneCycleLR: total_steps must be >= 2, got {total_steps}")
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleLR: pct_start must be in (0, 1), got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        self.initial_div = div_factor
        self.min_div = div_factor * final_div_factor
        self.max_lrs = _one_per_group(optimizer, max_lr)
        self.warm_end = float(pct_start * total_steps) - 1
        self.cycle_momentum = cycle_momentum
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, self.max_lrs):
                group["lr"] = top / div_factor
        if cycle_momentum and not all(
            "momentum" in g or "betas" in g for g in optimizer.param_groups
        ):
            raise ValueError("OneCycleLR: cycle_momentum needs an optimizer with momentum or betas")
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _progress(self, step: int) -> tuple[int, float]:
        """(phase 0 = warm-up or 1 = annealing, fraction of that phase done)."""
        # the usual loop steps after each of the total_steps batches, so step == total_steps
        # happens (its lr is never used); one more is a mistake, as in PyTorch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR stepped {step} times, more than total_steps={self.total_steps}"
            )
        if step <= self.warm_end:
            # a warm-up shorter than one step (pct_start * total_steps <= 1) is already done
            return 0, step / self.warm_end if self.warm_end > 0 else 1.0
        return 1, min(1.0, (step - self.warm_end) / (self.total_steps - 1 - self.warm_end))

    def lrs_at(self, step: int) -> list[float]:
        """Each group's cycle, from its own peak: top / div_factor up to top, then down to
        top / div_factor / final_div_factor."""
        phase, pct = self._progress(step)
        if phase == 0:
            return [self._anneal(top / self.initial_div, top, pct) for top in self.max_lrs]
        return [self._anneal(top, top / self.min_div, pct) for top in self.max_lrs]

    def _apply(self) -> None:
        super()._apply()
        if not self.cycle_momentum:
            return
        phase, pct = self._progress(self.last_epoch)
        hi, lo = self.max_momentum, self.base_momentum
        momentum = self._anneal(hi, lo, pct) if phase == 0 else self._anneal(lo, hi, pct)
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum


def _one_per_group(optimizer: Optimizer, max_lr: Any) -> list[float]:
    """``max_lr`` as a list with one value per parameter group (a single number: the same for
    all); a list of the wrong length is an error naming both lengths."""
    groups = len(optimizer.param_groups)
    if not isinstance(max_lr, (list, tuple)):
        return [float(max_lr)] * groups
    if len(max_lr) != groups:
        raise ValueError(
            f"OneCycleLR: max_lr must have one value per parameter group ({groups}), "
            f"got {len(max_lr)}"
        )
    return [float(top) for top in max_lr]
