"""CNN layers: parameters and shapes, forward equal to the F ops, train/eval behaviour of
BatchNorm and Dropout, state-dict round trip of a small CNN through a file, to(device)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.models import SmallCNN

import minidl as md
import minidl.functional as F
from minidl import nn


def _x(rng, shape=(2, 3, 8, 8), device="cpu"):
    return md.tensor(rng.standard_normal(shape, dtype=np.float32), device=device)


def test_conv2d_parameters_shapes_and_forward(rng):
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    assert conv.weight.shape == (5, 3, 3, 3) and conv.bias.shape == (5,)
    x = _x(rng)
    y = conv(x)
    assert y.shape == (2, 5, 4, 4)
    np.testing.assert_array_equal(y.numpy(), F.conv2d(x, conv.weight, conv.bias, 2, 1).numpy())
    assert nn.Conv2d(3, 5, (1, 3), bias=False).bias is None
    assert repr(conv) == "Conv2d(3, 5, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"


def test_pooling_lrn_layers_equal_their_ops(rng):
    x = _x(rng, (2, 6, 9, 9))
    cases = [
        (nn.MaxPool2d(3, 2, ceil_mode=True), F.max_pool2d(x, 3, 2, 0, True)),
        (nn.MaxPool2d(3, 1, 1), F.max_pool2d(x, 3, 1, 1)),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False), F.avg_pool2d(x, 3, 2, 1, False, False)),
        (nn.AdaptiveAvgPool2d((2, 3)), F.adaptive_avg_pool2d(x, (2, 3))),
        (nn.LocalResponseNorm(5, 1e-3, 0.75, 2.0), F.local_response_norm(x, 5, 1e-3, 0.75, 2.0)),
        (nn.ReLU(), F.relu(x)),
    ]
    for layer, ref in cases:
        assert list(layer.parameters()) == []
        np.testing.assert_array_equal(layer(x).numpy(), ref.numpy(), err_msg=repr(layer))
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 6, 1, 1)


def test_batchnorm_train_uses_batch_stats_and_updates_running(rng, xp, device):
    bn = nn.BatchNorm2d(3, momentum=0.2).to(device)
    x = _x(rng, (4, 3, 5, 5), device) * 3 + 1
    xs = x.numpy()
    y = bn(x).numpy()
    mean, var = xs.mean(axis=(0, 2, 3)), xs.var(axis=(0, 2, 3))
    ref = (xs - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    n = 4 * 5 * 5
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.8 + 0.2 * var * n / (n - 1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    assert bn.running_mean.device == device

    bn.eval()
    before = bn.running_mean.numpy().copy()
    y = bn(x).numpy()
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    np.testing.assert_allclose(
        y, (xs - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    assert bn.num_batches_tracked.item() == 1


def test_batchnorm_cumulative_average_and_no_running_stats(rng):
    bn = nn.BatchNorm2d(2, momentum=None)
    xs = [_x(rng, (3, 2, 4, 4)) + i for i in range(3)]
    for x in xs:
        bn(x)
    means = [x.numpy().mean(axis=(0, 2, 3)) for x in xs]
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean(means, axis=0), rtol=1e-5)
    free = nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    assert list(free.parameters()) == [] and list(free.buffers()) == []
    y = free(xs[0]).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # batch statistics in eval
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        bn(_x(rng, (3, 4, 4, 4)))


def test_dropout_train_and_eval(rng):
    drop = nn.Dropout(0.5)
    x = md.tensor(np.ones((200, 50)))
    y = drop(x).numpy()
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(1.5)


def test_train_eval_switches_dropout_and_batchnorm_in_a_model(rng):
    net = SmallCNN()
    x = _x(rng, (4, 3, 8, 8))
    a, b = net(x).numpy(), net(x).numpy()
    assert not np.array_equal(a, b)  # dropout and batch statistics differ per call
    assert net.stem[1].num_batches_tracked.item() == 2
    net.eval()
    a, b = net(x).numpy(), net(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert net.stem[1].num_batches_tracked.item() == 2


def test_small_cnn_state_dict_round_trip_through_a_file(rng, tmp_path):
    net = SmallCNN()
    x = _x(rng, (4, 3, 8, 8))
    for _ in range(3):
        net(x)  # move the running statistics away from their initial values
    net.eval()
    sd = net.state_dict()
    assert "stem.1.running_var" in sd and "branches.1.1.weight" in sd
    assert "stem.1.num_batches_tracked" in sd
    md.save(sd, tmp_path / "cnn.npz")
    other = SmallCNN()
    other.load_state_dict(md.load(tmp_path / "cnn.npz"))
    other.eval()
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())
    n_params = (8 * 3 * 9) + 2 * 8 + (4 * 8 + 4) * 2 + (8 * 10 + 10)
    assert net.num_parameters() == n_params


def test_small_cnn_to_device_round_trip(rng, device):
    net = SmallCNN().eval()
    x = _x(rng, (2, 3, 8, 8))
    ref = net(x).numpy()
    net.to(device)
    np.testing.assert_allclose(net(x.to(device)).numpy(), ref, rtol=1e-5, atol=1e-6)
    net.to("cpu")
    np.testing.assert_array_equal(net(x).numpy(), ref)


def test_small_cnn_trains(rng):
    nn.init.manual_seed(0)
    net = SmallCNN()
    net.drop = nn.Dropout(0.0)  # overfit a batch: no noise
    x = _x(rng, (8, 3, 8, 8))
    y = md.tensor(rng.integers(0, 10, 8))
    opt = md.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(np.log(10), abs=0.5)
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: nn.Linear(0, 3), ValueError, ["Linear", "in_features", ">= 1", "got 0"]),
        (lambda: nn.Linear(3, 0), ValueError, ["out_features", ">= 1", "got 0"]),
        (lambda: nn.Linear(2.5, 3), TypeError, ["in_features", "int", "2.5"]),
        (lambda: nn.Conv2d(3, 3, 0), ValueError, ["Conv2d", "kernel_size", ">= 1", "got 0"]),
        (lambda: nn.Conv2d(3, 3, (3, 0)), ValueError, ["kernel_size", ">= 1", "got 0"]),
        (lambda: nn.Conv2d(0, 3, 3), ValueError, ["in_channels", ">= 1", "got 0"]),
        (lambda: nn.Conv2d(3, 0, 3), ValueError, ["out_channels", ">= 1", "got 0"]),
        (lambda: nn.Conv2d(3, 3, 3, stride=0), ValueError, ["stride", ">= 1", "got 0"]),
        (lambda: nn.Conv2d(3, 3, 3, padding=-1), ValueError, ["padding", ">= 0", "got -1"]),
        (lambda: nn.Conv2d(3, 3, 1.5), TypeError, ["kernel_size", "pair of ints", "1.5"]),
    ],
)
def test_layer_size_errors_name_argument_expected_and_actual(make, error, words):
    """Zero-sized layers are refused when built (PyTorch builds them and fails later, if at all)."""
    with pytest.raises(error) as info:
        make()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
