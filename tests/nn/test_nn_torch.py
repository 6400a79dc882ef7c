"""Optional yardstick: the same small CNN in torch.nn has the same state-dict keys and shapes,
and with torch's weights loaded our forward pass gives torch's outputs (train and eval).

Skipped when PyTorch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.models import SmallCNN

import minidl as md

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
tnn = torch.nn


class TorchSmallCNN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.stem = tnn.Sequential(
            tnn.Conv2d(3, 8, 3, padding=1, bias=False), tnn.BatchNorm2d(8), tnn.ReLU()
        )
        self.lrn = tnn.LocalResponseNorm(5)
        self.pool = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.branches = tnn.ModuleList(
            [tnn.Conv2d(8, 4, 1), tnn.Sequential(tnn.AvgPool2d(3, 1, 1), tnn.Conv2d(8, 4, 1))]
        )
        self.gap = tnn.AdaptiveAvgPool2d(1)
        self.flat = tnn.Flatten()
        self.drop = tnn.Dropout(0.4)
        self.fc = tnn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.lrn(self.stem(x)))
        x = torch.cat([b(x) for b in self.branches], dim=1)
        return self.fc(self.drop(self.flat(self.gap(x))))


def test_state_dict_keys_and_shapes_match_torch():
    ours = {k: v.shape for k, v in SmallCNN().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in TorchSmallCNN().state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs
    assert [n for n, _ in SmallCNN().named_modules()] == [
        n for n, _ in TorchSmallCNN().named_modules()
    ]


def test_forward_with_torch_weights_matches_torch():
    torch.manual_seed(0)
    tnet = TorchSmallCNN().double()
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8))
    tnet.drop.p = 0.0  # dropout masks cannot match; everything else must
    tnet(torch.tensor(x))  # one training step of batch norm statistics
    net = SmallCNN()
    net.drop.p = 0.0
    net.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    xt = md.tensor(x, dtype=np.float64)
    # parameters were cast to our float32: compare in float32 precision
    for mode in ("train", "eval"):
        getattr(tnet, mode)()
        getattr(net, mode)()
        with torch.no_grad():
            want = tnet.float()(torch.tensor(x, dtype=torch.float32)).numpy()
        np.testing.assert_allclose(
            net(xt.float()).numpy(), want, rtol=1e-4, atol=1e-5, err_msg=mode
        )
        tnet.double()
    bn, tbn = net.stem[1], tnet.stem[1]
    np.testing.assert_allclose(bn.running_var.numpy(), tbn.running_var.numpy(), rtol=1e-5)
    assert bn.num_batches_tracked.item() == tbn.num_batches_tracked.item() == 2
