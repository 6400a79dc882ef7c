"""Averaged weights (minidl.optim.swa_utils): the exponential and the plain average against their
closed forms, buffers averaged or followed, the state carried through a state dict, on every
device; against torch.optim.swa_utils in tests/optim/test_optim_torch.py."""

from __future__ import annotations

import numpy as np
import pytest

from minidl import Tensor, backend, nn
from minidl.optim.swa_utils import (
    AveragedModel,
    get_ema_multi_avg_fn,
    get_swa_multi_avg_fn,
    update_bn,
)


def small_model(device="cpu"):
    nn.init.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).to(device)


def set_weights(model, rng):
    """New random weights and batch-norm statistics; returns them (float64 copies)."""
    values = {}
    for name, t in model.state_dict().items():
        floating = np.issubdtype(t.data.dtype, np.floating)
        values[name] = rng.standard_normal(t.shape) if floating else rng.integers(0, 99, t.shape)
    model.load_state_dict(values)
    return values


def averaged_values(averaged):
    """The averaged copy's state dict as NumPy arrays, by the model's names."""
    entries = averaged.state_dict().items()
    return {k.removeprefix("module."): backend.to_numpy(v.data) for k, v in entries}


@pytest.mark.parametrize("use_buffers", [True, False])
def test_an_exponential_average_follows_its_closed_form(xp, device, rng, use_buffers):
    """Floating tensors: the first update copies, then ``d * average + (1 - d) * new``; batch
    norm's running statistics so too with ``use_buffers``, else the model's; its step count
    (an integer) always the model's."""
    model, decay = small_model(device), 0.9
    ema = AveragedModel(model, get_ema_multi_avg_fn(decay), use_buffers=use_buffers)
    expected: dict = {}
    for _ in range(5):
        values = set_weights(model, rng)
        ema.update_parameters(model)
        for name, v in values.items():
            floating = np.issubdtype(np.asarray(v).dtype, np.floating)
            averaged = floating and (use_buffers or "running" not in name)
            if name in expected and averaged:
                v = decay * expected[name] + (1 - decay) * v
            expected[name] = v
    got = averaged_values(ema)
    assert backend.get_array_module(ema.module[0].weight.data) is xp
    for name, v in expected.items():
        np.testing.assert_allclose(got[name], v, rtol=1e-5, atol=1e-6, err_msg=name)
    assert got["n_averaged"] == 5


def test_a_warmed_up_average_uses_the_smaller_decay_while_it_is_young(rng):
    """With ``warmup`` the ``n``-th update (``n`` already averaged) moves by ``1 - d_n``,
    ``d_n = min(decay, (1 + n) / (10 + n))``: 2/11 after the first copy, and ``decay`` itself
    once ``n`` reaches 4,490 for 0.998."""
    model = small_model()
    ema = AveragedModel(model, get_ema_multi_avg_fn(0.998, warmup=True), use_buffers=True)
    expected = None
    for n in range(6):
        w = set_weights(model, rng)["0.weight"]
        ema.update_parameters(model)
        d = min(0.998, (1 + n) / (10 + n))
        expected = w if expected is None else d * expected + (1 - d) * w
    np.testing.assert_allclose(averaged_values(ema)["0.weight"], expected, rtol=1e-5, atol=1e-6)
    # old enough: the plain decay
    a, c = [np.zeros(3)], [np.ones(3)]
    get_ema_multi_avg_fn(0.998, warmup=True)(a, c, 4490)
    np.testing.assert_allclose(a[0], 0.002)
    get_ema_multi_avg_fn(0.998, warmup=True)(a, c, 10)  # young: (1 + 10) / 20 = 0.55
    np.testing.assert_allclose(a[0], 0.002 + 0.45 * 0.998)


def test_the_plain_average_is_the_mean_of_every_update(xp, device, rng):
    model = small_model(device)
    swa = AveragedModel(model)  # PyTorch's default: the plain mean
    seen = []
    for _ in range(4):
        seen.append(set_weights(model, rng))
        swa.update_parameters(model)
    got = averaged_values(swa)
    for name in ("0.weight", "0.bias", "1.weight"):
        mean = np.mean([s[name] for s in seen], axis=0)
        np.testing.assert_allclose(got[name], mean, rtol=1e-5, atol=1e-6, err_msg=name)
    # the buffers are not averaged (use_buffers=False): the model's last
    np.testing.assert_allclose(got["1.running_mean"], seen[-1]["1.running_mean"], rtol=1e-6)


def test_the_average_goes_on_from_a_state_dict():
    """A checkpoint's average continues as if never saved: n_averaged comes with it."""
    model = small_model()
    a = AveragedModel(model, get_swa_multi_avg_fn())
    for seed in range(3):
        set_weights(model, np.random.default_rng(seed))
        a.update_parameters(model)
    b = AveragedModel(small_model(), get_swa_multi_avg_fn())
    b.load_state_dict({k: v.data.copy() for k, v in a.state_dict().items()})
    set_weights(model, np.random.default_rng(9))
    a.update_parameters(model)
    b.update_parameters(model)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(x.data, y.data, err_msg=k)
    assert int(b.n_averaged.data) == 4


def test_an_averaged_model_runs_its_copy_and_names_bad_input():
    model = small_model()
    ema = AveragedModel(model, get_ema_multi_avg_fn(0.5))
    ema.update_parameters(model)
    x = Tensor(np.ones((2, 3, 2, 2), np.float32))
    model.eval()
    ema.eval()
    np.testing.assert_array_equal(ema(x).numpy(), model(x).numpy())
    assert ema.module is not model and ema.module[0].weight is not model[0].weight
    with pytest.raises(ValueError, match="do not match the averaged copy"):
        ema.update_parameters(nn.Sequential(nn.Conv2d(3, 5, 1), nn.BatchNorm2d(5)))
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\], got 1.5"):
        get_ema_multi_avg_fn(1.5)
    with pytest.raises(TypeError, match="model must be a Module, got int"):
        AveragedModel(3)


def test_update_bn_gives_each_batch_the_same_weight_and_restores_the_model(xp, device, rng):
    """The running mean is the mean of the batches' means, the variance the mean of their
    unbiased variances, whatever the statistics were before; momentum and mode come back."""
    model = small_model(device).eval()
    set_weights(model, rng)  # statistics from elsewhere, to be replaced
    batches = [rng.standard_normal((n, 3, 4, 5)) for n in (2, 3, 5)]
    loader = [(Tensor(xp.asarray(b, dtype=np.float32)), None) for b in batches]
    update_bn(loader, model)
    conv = model[0]
    w = backend.to_numpy(conv.weight.data).reshape(4, 3)
    b = backend.to_numpy(conv.bias.data)
    outs = [np.einsum("oc,nchw->nohw", w, x) + b[:, None, None] for x in batches]
    means = [o.mean(axis=(0, 2, 3)) for o in outs]
    variances = [o.transpose(1, 0, 2, 3).reshape(4, -1).var(axis=1, ddof=1) for o in outs]
    bn = model[1]
    np.testing.assert_allclose(
        backend.to_numpy(bn.running_mean.data), np.mean(means, 0), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        backend.to_numpy(bn.running_var.data), np.mean(variances, 0), rtol=1e-4
    )
    assert int(backend.to_numpy(bn.num_batches_tracked.data)) == 3
    assert bn.momentum == 0.1 and not model.training and conv.weight.grad is None
    update_bn([], nn.Sequential(nn.ReLU()))  # no batch norm: nothing to do


def test_update_bn_without_dropout_draws_no_random_numbers():
    """dropout=False: the same statistics here (the dropout comes after the batch norm), the
    global generator's state unchanged, the dropout layer back in its mode."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Dropout(0.5))
    rng = np.random.default_rng(0)
    loader = [Tensor(rng.standard_normal((4, 3, 2, 2)).astype(np.float32)) for _ in range(2)]
    update_bn(loader, model)
    expected = backend.to_numpy(model[1].running_var.data).copy()
    np.random.seed(1)
    before = np.random.random(3)
    np.random.seed(1)
    update_bn(loader, model.eval(), dropout=False)
    assert not model[2].training
    np.testing.assert_array_equal(np.random.random(3), before)  # the same next numbers
    np.testing.assert_allclose(backend.to_numpy(model[1].running_var.data), expected, rtol=1e-6)
    np.random.seed(1)
    update_bn(loader, model)  # with dropout: masks drawn
    assert not np.array_equal(np.random.random(3), before)
