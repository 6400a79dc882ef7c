"""Optional yardstick: optimizers and schedules step for step against torch.optim (CPU).

Skipped when PyTorch is not installed (``pip install torch`` to run it).
"""

from __future__ import annotations

import numpy as np
import pytest

from minidl import Tensor, nn, optim
from minidl.optim import lr_scheduler as sched

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

CASES = {
    "sgd": (optim.SGD, "SGD", dict(lr=0.05)),
    "sgd momentum dampening wd": (
        optim.SGD,
        "SGD",
        dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=1e-2),
    ),
    "sgd nesterov": (optim.SGD, "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (optim.Adam, "Adam", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    "adam amsgrad": (optim.Adam, "Adam", dict(lr=0.01, amsgrad=True)),
    "adamw": (optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_torch(case):
    ours_cls, torch_name, kw = CASES[case]
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((4, 3))
    grads = rng.standard_normal((10, 4, 3))
    p = nn.Parameter(w0.copy())
    tp = torch.tensor(w0.copy(), requires_grad=True)
    ours, theirs = ours_cls([p], **kw), getattr(torch.optim, torch_name)([tp], **kw)
    for g in grads:
        g = g + 0.5 * p.numpy()  # make the gradient depend on the weights
        p.grad = Tensor(g.copy())
        tp.grad = torch.tensor(g.copy())
        ours.step()
        theirs.step()
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-10, atol=1e-12)


SCHEDULES = {
    "step": (
        lambda o: sched.StepLR(o, 3, 0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
    ),
    "cosine": (
        lambda o: sched.CosineAnnealingLR(o, 15, 0.001),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 15, 0.001),
    ),
    "one cycle": (
        lambda o: sched.OneCycleLR(o, max_lr=0.3, total_steps=30, pct_start=0.25),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(
            o, max_lr=0.3, total_steps=30, pct_start=0.25
        ),
    ),
}


def test_one_cycle_with_a_max_lr_per_group_matches_torch():
    """OneCycleLR(max_lr=[...]): one peak per parameter group, lr and momentum as PyTorch's."""
    ours_opt = optim.SGD(
        [{"params": [nn.Parameter(np.zeros(1))]}, {"params": [nn.Parameter(np.zeros(1))]}],
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    theirs_opt = torch.optim.SGD(
        [{"params": [torch.zeros(1, requires_grad=True)]},
         {"params": [torch.zeros(1, requires_grad=True)]}],
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    kw = dict(max_lr=[0.3, 0.05], total_steps=30, pct_start=0.25)
    ours = sched.OneCycleLR(ours_opt, **kw)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, **kw)
    for _ in range(30):
        for mine, other in zip(ours_opt.param_groups, theirs_opt.param_groups):
            for key in ("lr", "momentum"):
                assert mine[key] == pytest.approx(other[key], rel=1e-9, abs=1e-12), key
        theirs_opt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_schedule_matches_torch(case):
    ours_make, theirs_make = SCHEDULES[case]
    ours_opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    theirs_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    ours, theirs = ours_make(ours_opt), theirs_make(theirs_opt)
    for _ in range(30):
        for key in ("lr", "momentum"):
            assert ours_opt.param_groups[0][key] == pytest.approx(
                theirs_opt.param_groups[0][key], rel=1e-9, abs=1e-12
            ), key
        theirs_opt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("ema", [True, False])
def test_averaged_model_matches_torch(ema):
    """AveragedModel (exponential with buffers, or the plain mean) against torch.optim.swa_utils
    over the same five sets of weights. (Integer buffers, batch norm's step count, differ on
    purpose: torch averages them as integers, minidl takes the model's.)"""
    from torch.optim import swa_utils as torch_swa

    from minidl.optim import swa_utils

    def model_pair():
        ours = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
        return ours, theirs

    ours, theirs = model_pair()
    kw, torch_kw = {}, {}
    if ema:
        kw = dict(multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8), use_buffers=True)
        torch_kw = dict(multi_avg_fn=torch_swa.get_ema_multi_avg_fn(0.8), use_buffers=True)
    averaged = swa_utils.AveragedModel(ours, **kw)
    torch_averaged = torch_swa.AveragedModel(theirs, **torch_kw)
    rng = np.random.default_rng(0)
    for _ in range(5):
        values = {k: rng.standard_normal(tuple(v.shape)).astype(np.float32)
                  for k, v in theirs.state_dict().items() if v.is_floating_point()}  # fmt: skip
        ours.load_state_dict(values, strict=False)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()}, strict=False)
        averaged.update_parameters(ours)
        torch_averaged.update_parameters(theirs)
    expected = {k: v for k, v in torch_averaged.state_dict().items() if v.is_floating_point()}
    got = averaged.state_dict()
    assert expected.keys() <= got.keys()
    for k, v in expected.items():
        np.testing.assert_allclose(got[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert int(got["n_averaged"].numpy()) == int(torch_averaged.n_averaged) == 5


def test_update_bn_matches_torch():
    """update_bn over the same batches gives torch.optim.swa_utils.update_bn's statistics."""
    from torch.optim import swa_utils as torch_swa

    from minidl.optim import swa_utils

    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1),
                         nn.BatchNorm2d(2, momentum=0.3))  # fmt: skip
    theirs = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                 torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1),
                                 torch.nn.BatchNorm2d(2, momentum=0.3))  # fmt: skip
    weights = {k: v.data for k, v in ours.state_dict().items()}
    theirs.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((n, 3, 6, 6)).astype(np.float32) for n in (4, 2, 7)]
    swa_utils.update_bn([(Tensor(b), 0) for b in batches], ours)
    torch_swa.update_bn([(torch.from_numpy(b), 0) for b in batches], theirs)
    got = ours.state_dict()
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(got[k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert ours[4].momentum == theirs[4].momentum == 0.3
