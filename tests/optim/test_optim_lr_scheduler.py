"""Learning-rate schedules: closed forms, per-step use, state_dict resume, OneCycle momentum."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minidl import nn, optim
from minidl.optim import lr_scheduler as sched


def _opt(lr=0.1, **kw):
    return optim.SGD([nn.Parameter(np.zeros(1))], lr=lr, momentum=0.9, **kw)


def _lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.step()
    return out


def test_step_lr_googlenet_schedule():
    s = sched.StepLR(_opt(0.01), step_size=8, gamma=0.96)  # "4% every 8 epochs"
    got = _lrs(s, 25)
    assert got == pytest.approx([0.01 * 0.96 ** (e // 8) for e in range(25)])
    assert s.get_last_lr() == pytest.approx([0.01 * 0.96**3])


def test_cosine_annealing():
    s = sched.CosineAnnealingLR(_opt(0.1), T_max=10, eta_min=0.001)
    got = _lrs(s, 11)
    want = [0.001 + 0.099 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert got == pytest.approx(want)
    assert got[0] == pytest.approx(0.1) and got[10] == pytest.approx(0.001)


def test_warmup_cosine():
    s = sched.WarmupCosineLR(_opt(0.2), warmup_steps=4, total_steps=10)
    got = _lrs(s, 12)
    assert got[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert got[4] == pytest.approx(0.2) and got[7] == pytest.approx(0.1)
    assert got[10:] == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="warmup_steps"):
        sched.WarmupCosineLR(_opt(), warmup_steps=10, total_steps=10)


@pytest.mark.parametrize("total", [2, 3, 4])
def test_one_cycle_warm_up_shorter_than_a_step(total):
    """pct_start * total_steps <= 1 (a short run): no warm-up, straight down from max_lr.

    It divided by zero (the tiny-data `googlenet.py train` of one 4-batch epoch crashed)."""
    s = sched.OneCycleLR(_opt(0.1), max_lr=1.0, total_steps=total, pct_start=0.25)
    got = _lrs(s, total)
    assert all(math.isfinite(v) for v in got)
    assert got == sorted(got, reverse=True) and got[0] >= 0.75
    assert got[-1] == pytest.approx(1.0 / (25 * 1e4))


def test_one_cycle_shape_and_momentum():
    opt = _opt(0.1)
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=100, pct_start=0.3)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        s.step()
    assert lrs[0] == pytest.approx(1.0 / 25)
    assert max(lrs) == pytest.approx(1.0) and int(np.argmax(lrs)) == 29
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4)
    assert moms[0] == pytest.approx(0.95) and moms[29] == pytest.approx(0.85)
    assert moms[-1] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="total_steps"):
        s.step()
    adam = optim.Adam([nn.Parameter(np.zeros(1))])
    sched.OneCycleLR(adam, max_lr=0.01, total_steps=10)
    assert adam.param_groups[0]["betas"] == (0.95, 0.999)


@pytest.mark.parametrize(
    "make",
    [
        lambda o: sched.StepLR(o, 3, 0.5),
        lambda o: sched.CosineAnnealingLR(o, 20),
        lambda o: sched.WarmupCosineLR(o, 5, 20),
        lambda o: sched.OneCycleLR(o, max_lr=0.5, total_steps=20),
    ],
)
@pytest.mark.parametrize("optimizer_first", [True, False])
def test_resume_from_state_dict(make, optimizer_first):
    ref = make(_opt())
    want = _lrs(ref, 20)
    first = make(_opt())
    _lrs(first, 8)
    saved_opt, saved_sched = first.optimizer.state_dict(), first.state_dict()
    opt = _opt()
    # either order works: loading the schedule re-applies its lr (and momentum)
    if optimizer_first:
        opt.load_state_dict(saved_opt)
        resumed = make(opt)
    else:
        resumed = make(opt)
        opt.load_state_dict(saved_opt)
    resumed.load_state_dict(saved_sched)
    assert _lrs(resumed, 12) == pytest.approx(want[8:])
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(
        first.optimizer.param_groups[0]["initial_lr"]
    )


def test_one_cycle_takes_one_max_lr_per_group():
    """max_lr as a list (PyTorch's form): each group runs the cycle of its own peak, as a
    one-group schedule with that peak would; a list of the wrong length names both lengths."""
    a, b = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9)
    s = sched.OneCycleLR(opt, max_lr=[0.4, 0.02], total_steps=20, pct_start=0.25)
    alone = [
        sched.OneCycleLR(_opt(), max_lr=top, total_steps=20, pct_start=0.25) for top in (0.4, 0.02)
    ]
    for _ in range(20):
        assert [g["lr"] for g in opt.param_groups] == [
            o.optimizer.param_groups[0]["lr"] for o in alone
        ]
        assert s.get_last_lr() == [g["lr"] for g in opt.param_groups]
        for schedule in (s, *alone):
            schedule.step()
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([0.4 / 25, 0.02 / 25])
    with pytest.raises(ValueError, match=r"one value per parameter group \(2\), got 3"):
        sched.OneCycleLR(opt, max_lr=[0.1, 0.2, 0.3], total_steps=20)


def test_schedules_leave_per_group_ratios():
    a, b = nn.Parameter(np.zeros(1)), nn.Parameter(np.zeros(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    s = sched.StepLR(opt, 1, 0.5)
    s.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.5])
