"""Module machinery: registration, traversal, state dicts, modes, devices, repr."""

from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl import nn


class Block(nn.Module):
    """conv-like block built from parts that need no CNN ops: Linear + buffer + ReLU."""

    def __init__(self, n: int):
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.act = nn.ReLU()
        self.register_buffer("calls", md.tensor(np.zeros((), np.int64)))
        self.register_buffer("scratch", md.tensor(np.zeros(n)), persistent=False)

    def forward(self, x):
        self.calls.data += 1
        return self.act(self.fc(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Sequential(nn.Linear(8, 3, bias=False))
        self.scale = nn.Parameter(np.ones(1, np.float32))

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x) * self.scale


def test_registration_names_and_counts():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "scale",
        "stem.weight",
        "stem.bias",
        "blocks.0.fc.weight",
        "blocks.0.fc.bias",
        "blocks.1.fc.weight",
        "blocks.1.fc.bias",
        "head.0.weight",
    ]
    assert net.num_parameters() == 1 + (4 * 8 + 8) + 2 * (8 * 8 + 8) + 8 * 3
    assert all(p.requires_grad and isinstance(p, nn.Parameter) for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == [
        "blocks.0.calls",
        "blocks.0.scratch",
        "blocks.1.calls",
        "blocks.1.scratch",
    ]
    assert [n for n, _ in net.named_modules()] == [
        "",
        "stem",
        "blocks",
        "blocks.0",
        "blocks.0.fc",
        "blocks.0.act",
        "blocks.1",
        "blocks.1.fc",
        "blocks.1.act",
        "head",
        "head.0",
    ]
    assert [type(c).__name__ for c in net.children()] == ["Linear", "ModuleList", "Sequential"]


def test_state_dict_keys_follow_pytorch():
    sd = Net().state_dict()
    # parameters, then persistent buffers, of each module before its children's entries
    assert list(sd) == [
        "scale",
        "stem.weight",
        "stem.bias",
        "blocks.0.calls",
        "blocks.0.fc.weight",
        "blocks.0.fc.bias",
        "blocks.1.calls",
        "blocks.1.fc.weight",
        "blocks.1.fc.bias",
        "head.0.weight",
    ]
    assert "blocks.0.scratch" not in sd  # non-persistent


def test_shared_parameter_counted_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 3  # seq, a, relu


def test_reassign_and_delete():
    m = nn.Linear(2, 2)
    m.bias = None
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    m.extra = nn.ReLU()
    assert "extra" in dict(m.named_children())
    del m.extra
    assert "extra" not in dict(m.named_children())
    with pytest.raises(TypeError, match="weight"):
        m.weight = np.zeros((2, 2))
    with pytest.raises(AttributeError, match="nothing"):
        _ = m.nothing


def test_setattr_before_init_says_what_to_do():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_forward_and_backward_through_a_module(rng):
    net = Net()
    x = md.tensor(rng.standard_normal((5, 4)))
    out = net(x)
    assert out.shape == (5, 3)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.blocks[0].calls.item() == 1


def test_load_state_dict_copies_in_place(rng):
    src, dst = Net(), Net()
    params_before = list(dst.parameters())
    dst.load_state_dict(src.state_dict())
    assert list(dst.parameters()) == params_before  # same Parameter objects (optimizers keep them)
    x = md.tensor(rng.standard_normal((2, 4)))
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())
    # copies, not aliases
    src.stem.weight.data += 1
    assert not np.array_equal(src.stem.weight.numpy(), dst.stem.weight.numpy())


def test_load_state_dict_strict_lists_every_problem():
    net = Net()
    sd = dict(net.state_dict())
    del sd["stem.bias"]
    del sd["blocks.1.calls"]
    sd["stem.extra"] = np.zeros(3)
    sd["head.0.weight"] = np.zeros((3, 9), np.float32)
    before = net.head[0].weight.numpy().copy()
    with pytest.raises(ValueError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    for piece in ("stem.bias", "blocks.1.calls", "stem.extra", "head.0.weight", "(3, 8)", "(3, 9)"):
        assert piece in msg
    np.testing.assert_array_equal(net.head[0].weight.numpy(), before)  # nothing loaded

    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["stem.bias", "blocks.1.calls"]  # in state-dict order
    assert result.unexpected_keys == ["stem.extra"]
    assert result.mismatched_keys == [("head.0.weight", (3, 8), (3, 9))]
    assert bool(result)
    assert not net.load_state_dict(Net().state_dict())


def test_state_dict_round_trip_through_a_file(tmp_path, rng):
    net, other = Net(), Net()
    x = md.tensor(rng.standard_normal((3, 4)))
    net(x)
    path = tmp_path / "net.npz"
    md.save(net.state_dict(), path)
    other.load_state_dict(md.load(path))
    assert other.blocks[0].calls.item() == 1
    assert other.blocks[0].calls.dtype == np.int64
    np.testing.assert_array_equal(net(x).numpy(), other(x).numpy())


def test_train_eval_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_to_cpu_round_trip_keeps_objects(device, rng):
    net = Net()
    x = md.tensor(rng.standard_normal((2, 4)))
    ref = net(x).numpy()
    params = list(net.parameters())
    assert net.to(device) is net
    assert list(net.parameters()) == params
    assert all(p.device == device for p in net.parameters())
    assert all(b.device == device for b in net.buffers())
    np.testing.assert_allclose(net(x.to(device)).numpy(), ref, rtol=1e-6, atol=1e-6)
    net.to("cpu")
    assert all(p.device == "cpu" for p in net.parameters())
    np.testing.assert_array_equal(net(x).numpy(), ref)


def test_double_casts_floating_state_only(rng):
    block = Block(3)
    assert block.double() is block
    assert block.fc.weight.dtype == np.float64 and block.calls.dtype == np.int64
    x = md.tensor(rng.standard_normal((2, 3)), dtype=np.float64)
    assert block(x).dtype == np.float64
    block.float()
    assert block.fc.weight.dtype == np.float32


def test_deepcopy_gives_an_independent_module():
    import copy

    net = Net()
    twin = copy.deepcopy(net)
    twin.stem.weight.data += 1
    assert not np.array_equal(twin.stem.weight.numpy(), net.stem.weight.numpy())
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in net.named_parameters()]


def test_sequential_and_modulelist_containers():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2]
    assert list(seq) == layers
    assert isinstance(seq[1:], nn.Sequential) and list(seq[1:]) == layers[1:]
    with pytest.raises(IndexError):
        seq[3]
    seq.append(nn.ReLU())
    assert len(seq) == 4 and "3" in dict(seq.named_children())
    ml = nn.ModuleList(layers[:2])
    ml.append(layers[2])
    ml[0] = nn.Linear(2, 3)
    assert len(ml) == 3 and ml[1] is layers[1]
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2"]
    ml.insert(0, nn.ReLU())
    assert isinstance(ml[0], nn.ReLU) and ml[3] is layers[2]


def test_flatten_and_linear_shapes(rng):
    x = md.tensor(rng.standard_normal((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    lin = nn.Linear(60, 7)
    y = lin(nn.Flatten()(x))
    ref = x.numpy().reshape(2, 60) @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_repr_shows_the_tree():
    text = repr(Net())
    assert text.splitlines()[0] == "Net("
    assert "(stem): Linear(in_features=4, out_features=8, bias=True)" in text
    assert "  (blocks): ModuleList(\n    (0): Block(\n      (fc): Linear(" in text
    assert "(head): Sequential(\n    (0): Linear(in_features=8, out_features=3, bias=False)" in text
    assert repr(nn.ReLU()) == "ReLU()"
