"""GoogLeNet: shapes, exact parameter counts, Table 1 multiply-adds, aux heads, gradients,
learning, and the torchvision weight import (against PyTorch when it is installed)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.paths import ROOT
from helpers.pth_files import PickleWriter, write_archive

import googlenet as G
import googlenet_cli as C
import googlenet_table as T
import minidl as md
import minidl.functional as F
from minidl import optim
from minidl.summary import profile

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def paper_rows():
    return {r["name"]: r for r in T.table1(G.GoogLeNet(variant="paper", aux_logits=False), 224)}


def stage_shapes(model, size, batch=1):
    """Output shape of every top-level stage of an eval-mode forward pass, by name."""
    model.eval()
    x = md.tensor(np.zeros((batch, 3, size, size), np.float32))
    stats = profile(model, x)
    return {name: s.output_shape for name, s in stats.items() if name and "." not in name}


# ---------------------------------------------------------------------------- the module


def test_importing_the_model_leaves_the_environment_alone():
    """``import googlenet`` changes no environment variable; run as the training program, its
    command line asks OpenBLAS for a short spin before NumPy loads (a subprocess each: a fresh
    NumPy)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    imported = (
        "import os; before = dict(os.environ); import googlenet; print(dict(os.environ) == before)"
    )
    program = (
        "import os, runpy, sys; sys.argv = ['googlenet.py', '--help']\n"
        "try: runpy.run_module('googlenet', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    )
    for code, expected in ((imported, "True"), (program, "4")):
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == expected


def test_run_as_a_program_the_model_file_is_executed_once():
    """``python googlenet.py ...`` hands over to its command line, which imports this file as
    ``googlenet``: the model is defined once (its classes one object, not a ``__main__`` copy
    beside the imported one). Counted by the namedtuple the file makes at its top level."""
    code = (
        "import collections, runpy, sys\n"
        "made, real = [], collections.namedtuple\n"
        "collections.namedtuple = lambda name, *a, **k: made.append(name) or real(name, *a, **k)\n"
        "sys.argv = ['googlenet.py', 'summary', '--variant', 'cifar']\n"
        "try: runpy.run_path('googlenet.py', run_name='__main__')\n"
        "except SystemExit as e: assert not e.code, e.code\n"
        "print(made.count('GoogLeNetOutputs'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1"


def test_fuse_is_an_opt_in_with_the_same_values():
    """The model reads as the paper draws it until ``fuse()``; fused (batch norm + ReLU as one
    op, each module's 1x1 convolutions of x as one product) it computes the same loss and
    gradients (float64)."""
    model = G.googlenet_cifar(width=0.125, dropout=0.0)
    units = [m for m in model.modules() if isinstance(m, (G.ConvBlock, G.Inception))]
    assert units and not any(m.fused for m in units)
    assert model.fuse() is model and all(m.fused for m in units)
    model.fuse(False)
    assert not any(m.fused for m in units)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    results = []
    for fused in (False, True):
        md.nn.init.manual_seed(0)
        net = G.googlenet_cifar(width=0.125, dropout=0.0).double().fuse(fused).train()
        loss = net(md.Tensor(x)).sum()
        loss.backward()
        results.append((loss.item(), {n: p.grad.numpy() for n, p in net.named_parameters()}))
    (plain, plain_grads), (fused, fused_grads) = results
    assert fused == pytest.approx(plain, rel=1e-12)
    for name, grad in plain_grads.items():
        np.testing.assert_allclose(fused_grads[name], grad, rtol=1e-9, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------- parameters


def test_paper_parameter_counts():
    assert G.GoogLeNet(variant="paper", aux_logits=False).num_parameters() == 6_998_552
    model = G.GoogLeNet(variant="paper", aux_logits=True)
    assert model.aux1.num_parameters() == 3_188_840
    assert model.aux2.num_parameters() == 3_190_888
    assert model.num_parameters() == 6_998_552 + 6_379_728


def test_torchvision_parameter_counts():
    assert G.GoogLeNet(variant="torchvision", aux_logits=False).num_parameters() == 6_624_904
    assert G.GoogLeNet(variant="torchvision", aux_logits=True).num_parameters() == 13_004_888


@pytest.mark.parametrize(
    "width, kernel5, params",
    [(1, 5, 5_871_914), (1, 3, 5_490_986), (0.5, 5, 1_475_418), (0.25, 5, 372_578),
     (0.25, 3, 348_770)],
)  # fmt: skip
def test_cifar_parameter_counts(width, kernel5, params):
    assert G.googlenet_cifar(width, kernel5=kernel5).num_parameters() == params


def test_width_rounds_channels_and_keeps_at_least_one():
    assert G.scale_channels(24, 0.25) == 6
    assert G.scale_channels(16, 0.01) == 1
    model = G.googlenet_cifar(0.01)
    assert model.inception3a.ch5x5red == 1
    assert model(md.tensor(np.zeros((1, 3, 32, 32), np.float32))).shape == (1, 10)


# ---------------------------------------------------------------------------- shapes


def test_paper_stage_shapes():
    shapes = stage_shapes(G.GoogLeNet(variant="paper", aux_logits=False), 224)
    assert shapes == {
        "conv1": (1, 64, 112, 112),
        "maxpool1": (1, 64, 56, 56),
        "lrn1": (1, 64, 56, 56),
        "conv2": (1, 64, 56, 56),
        "conv3": (1, 192, 56, 56),
        "lrn2": (1, 192, 56, 56),
        "maxpool2": (1, 192, 28, 28),
        "inception3a": (1, 256, 28, 28),
        "inception3b": (1, 480, 28, 28),
        "maxpool3": (1, 480, 14, 14),
        "inception4a": (1, 512, 14, 14),
        "inception4b": (1, 512, 14, 14),
        "inception4c": (1, 512, 14, 14),
        "inception4d": (1, 528, 14, 14),
        "inception4e": (1, 832, 14, 14),
        "maxpool4": (1, 832, 7, 7),
        "inception5a": (1, 832, 7, 7),
        "inception5b": (1, 1024, 7, 7),
        "avgpool": (1, 1024, 1, 1),
        "dropout": (1, 1024),
        "fc": (1, 1000),
    }


def test_torchvision_stage_shapes():
    shapes = stage_shapes(G.GoogLeNet(variant="torchvision", aux_logits=False), 224)
    assert "lrn1" not in shapes
    assert shapes["maxpool2"] == (1, 192, 28, 28)
    assert shapes["maxpool4"] == (1, 832, 7, 7)  # a 2x2/2 pool here, 3x3/2 in the paper
    assert shapes["inception5b"] == (1, 1024, 7, 7)
    assert shapes["fc"] == (1, 1000)


def test_cifar_stage_shapes():
    shapes = stage_shapes(G.googlenet_cifar(0.25), 32, batch=2)
    assert shapes == {
        "conv1": (2, 48, 32, 32),
        "inception3a": (2, 64, 32, 32),
        "inception3b": (2, 120, 32, 32),
        "maxpool3": (2, 120, 16, 16),
        "inception4a": (2, 128, 16, 16),
        "inception4b": (2, 128, 16, 16),
        "inception4c": (2, 128, 16, 16),
        "inception4d": (2, 132, 16, 16),
        "inception4e": (2, 208, 16, 16),
        "maxpool4": (2, 208, 8, 8),
        "inception5a": (2, 208, 8, 8),
        "inception5b": (2, 256, 8, 8),
        "avgpool": (2, 256, 1, 1),
        "dropout": (2, 256),
        "fc": (2, 10),
    }


def test_inception_branches_concatenate_in_order():
    block = G.Inception(8, 2, 3, 4, 1, 5, 6)
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 8, 5, 5)).astype(np.float32))
    y = block(x)
    assert y.shape == (2, 2 + 4 + 5 + 6, 5, 5) and block.out_channels == 17
    np.testing.assert_allclose(y.numpy()[:, :2], block.branch1(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(y.numpy()[:, 11:], block.branch4(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="kernel5 must be 3 or 5"):
        G.Inception(8, 2, 3, 4, 1, 5, 6, kernel5=7)


@pytest.mark.parametrize("bn_eps", [None, 1e-3])  # the paper's unit (bias) and conv + batch norm
def test_fused_1x1_convolutions_equal_the_separate_ones(bn_eps):
    """In training the three 1x1 convolutions on an Inception module's input run as one matrix
    product: the outputs, the running statistics and every gradient are those of the modules run
    one by one."""
    results = []
    for fuse in (True, False):
        md.nn.init.manual_seed(0)
        block = G.Inception(6, 3, 2, 4, 1, 2, 3, bn_eps=bn_eps).double()
        block.fused = fuse
        block.train()
        x = md.Tensor(np.random.default_rng(1).standard_normal((2, 6, 5, 5)), requires_grad=True)
        y = block(x)
        y.backward(md.Tensor(np.random.default_rng(2).standard_normal(y.shape)))
        state = {k: v.numpy().copy() for k, v in block.state_dict().items()}
        grads = {n: p.grad.numpy() for n, p in block.named_parameters()}
        results.append((y.numpy(), x.grad.numpy(), state, grads))
    (y1, gx1, s1, g1), (y0, gx0, s0, g0) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-10, atol=1e-12)
    assert s1.keys() == s0.keys() and g1.keys() == g0.keys()
    for k in s0:
        np.testing.assert_allclose(s1[k], s0[k], rtol=1e-12, atol=1e-12, err_msg=k)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_fused_inception_writes_branches_2_to_4_into_its_output():
    """Fused, an Inception module's branches 2-4 write their outputs straight into their channels
    of the block's output: the activations are stored once, not once per branch and again
    concatenated. Only branch 1 (a slice of the stacked 1x1 product) is copied in."""
    block = G.Inception(6, 3, 2, 4, 1, 2, 3, bn_eps=1e-3)
    for m in block.modules():
        if hasattr(m, "fused"):
            m.fused = True
    block.train()
    y = block(md.Tensor(np.random.default_rng(1).standard_normal((2, 6, 5, 5)).astype("f4")))
    branches = [t.data for t in y.creator.inputs]
    assert [np.shares_memory(b, y.data) for b in branches] == [False, True, True, True]


def test_naive_inception_passes_the_input_channels_through():
    block = G.NaiveInception(6, 2, 3, 4)
    y = block(md.tensor(np.ones((1, 6, 7, 7), np.float32)))
    assert y.shape == (1, 2 + 3 + 4 + 6, 7, 7) and block.out_channels == 15
    assert block.branch3.conv.kernel_size == (5, 5)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="variant must be one of"):
        G.GoogLeNet(variant="resnet")
    with pytest.raises(ValueError, match="width must be a positive number"):
        G.googlenet_cifar(0)
    with pytest.raises(ValueError, match="transform_input"):
        G.GoogLeNet(variant="paper", transform_input=True)


# ---------------------------------------------------------------------------- Table 1


def test_paper_multiply_adds_match_the_recount(paper_rows):
    rows = paper_rows
    assert sum(r["macs"] for r in rows.values()) == 1_582_671_872
    recount = {
        "conv1": (9_472, 118_013_952),
        "conv2+conv3": (114_944, 359_661_568),
        "inception3a": (163_696, 128_049_152),
        "inception3b": (388_736, 304_267_264),
        "inception4a": (376_176, 73_608_192),
        "inception4b": (449_160, 87_908_352),
        "inception4c": (510_104, 99_850_240),
        "inception4d": (605_376, 118_515_712),
        "inception4e": (868_352, 169_996_288),
        "inception5a": (1_043_456, 51_079_168),
        "inception5b": (1_444_080, 70_697_984),
        "fc": (1_025_000, 1_024_000),
    }
    for name, (params, macs) in recount.items():
        assert (rows[name]["params"], rows[name]["macs"]) == (params, macs), name


def test_inception_ops_within_one_percent_of_table1(paper_rows):
    table1_ops = {"3a": 128e6, "3b": 304e6, "4a": 73e6, "4b": 88e6, "4c": 100e6, "4d": 119e6,
                  "4e": 170e6, "5b": 71e6}  # fmt: skip
    for name, ops in table1_ops.items():
        assert paper_rows[f"inception{name}"]["macs"] == pytest.approx(ops, rel=0.01), name


def test_table1_rows_read_the_live_model(paper_rows):
    row = paper_rows["inception4e"]
    assert row["type"] == "inception (4e)" and row["output"] == "14x14x832" and row["depth"] == 2
    columns = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")
    assert [row[c] for c in columns] == [256, 160, 320, 32, 128, 128]
    stem = paper_rows["conv2+conv3"]  # the paper's "convolution 3x3/1" row: 1x1 reduce + 3x3
    assert (stem["patch/stride"], stem["#3x3 reduce"], stem["#3x3"]) == ("3x3/1", 64, 192)
    assert paper_rows["conv1"]["patch/stride"] == "7x7/2"
    assert paper_rows["avgpool"]["patch/stride"] == "7x7/1"


def test_summary_text_shows_totals_and_the_papers_figures():
    text = T.summary(G.GoogLeNet(variant="paper", aux_logits=True), 224)
    assert "6,998,552 parameters" in text and "1,582,671,872 multiply-adds" in text
    assert "6,379,728 more parameters" in text
    assert "paper ops" in text and "34M *" in text  # conv1's figure cannot be reproduced
    cifar = T.summary(G.googlenet_cifar(0.25, kernel5=5), 32)
    assert "372,578 parameters" in cifar and "91,449,856 multiply-adds" in cifar


# ---------------------------------------------------------------------------- aux heads, grads


def test_aux_heads_only_in_train_mode():
    model = G.googlenet_cifar(0.125, aux_logits=True)
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    out = model.train()(x)
    assert isinstance(out, G.GoogLeNetOutputs)
    assert out.logits.shape == out.aux1.shape == out.aux2.shape == (2, 10)
    with md.no_grad():
        logits = model.eval()(x)
    assert isinstance(logits, md.Tensor) and logits.shape == (2, 10)
    no_aux = G.googlenet_cifar(0.125, aux_logits=False).train()
    assert isinstance(no_aux(x), md.Tensor)


@pytest.mark.parametrize("aux", [False, True])
def test_gradients_reach_the_stem(aux):
    md.nn.init.manual_seed(0)
    model = G.googlenet_cifar(0.125, aux_logits=aux).train()
    x = md.tensor(np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32))
    y = md.tensor(np.array([0, 1, 2, 3]))
    out = model(x)
    if aux:
        loss = F.cross_entropy(out.logits, y)
        loss = loss + 0.3 * (F.cross_entropy(out.aux1, y) + F.cross_entropy(out.aux2, y))
    else:
        loss = F.cross_entropy(out, y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    assert np.abs(model.conv1.conv.weight.grad.numpy()).max() > 0
    if aux:
        assert np.abs(model.aux1.fc2.weight.grad.numpy()).max() > 0


def test_aux_loss_alone_reaches_the_stem():
    model = G.GoogLeNet(variant="paper", aux_logits=True, num_classes=10).train()
    x = md.tensor(np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32))
    out = model(x)
    F.cross_entropy(out.aux1, md.tensor(np.array([3]))).backward()
    assert np.abs(model.conv1.conv.weight.grad.numpy()).max() > 0
    assert model.inception4b.branch1.conv.weight.grad is None  # after aux1's tap: untouched


@pytest.mark.slow
def test_tiny_cifar_model_overfits_64_images():
    md.nn.init.manual_seed(0)
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((64, 3, 16, 16)).astype(np.float32))
    y = md.tensor(rng.integers(0, 10, 64))
    model = G.googlenet_cifar(0.0625, dropout=0.0).train()
    optimizer = optim.Adam(list(model.parameters()), lr=0.01)
    accuracy = 0.0
    for _ in range(200):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = float((logits.numpy().argmax(axis=1) == y.numpy()).mean())
        if accuracy > 0.95:
            break
    assert accuracy > 0.95, f"train accuracy {accuracy:.2%} after 200 steps"


# ---------------------------------------------------------------------------- torchvision


def test_import_torchvision_from_a_hand_built_pth(tmp_path):
    """No PyTorch: write our own model's weights in torch.save's format, convert, compare."""

    md.nn.init.manual_seed(5)
    source = G.GoogLeNet(variant="torchvision", num_classes=10, aux_logits=True).eval()
    rng = np.random.default_rng(5)
    for name, buf in source.named_buffers():  # non-trivial running statistics
        if name.endswith("running_mean"):
            buf.data[...] = rng.standard_normal(buf.shape) * 0.1
        elif name.endswith("running_var"):
            buf.data[...] = rng.uniform(0.5, 1.5, buf.shape)
    state = {k: v.numpy() for k, v in source.state_dict().items()}
    w, storages = PickleWriter(), {}

    def writer(key, value, index):
        kind = "LongStorage" if value.dtype == np.int64 else "FloatStorage"
        value = np.array(value, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
        storages[str(index)] = value.tobytes()
        strides = tuple(s // value.itemsize for s in value.strides)
        return lambda: w.tensor(kind, str(index), value.size, 0, value.shape, strides)

    pkl = w.state_dict([(k, writer(k, v, i)) for i, (k, v) in enumerate(state.items())])
    write_archive(tmp_path / "googlenet.pth", pkl, storages, top="googlenet")

    C.import_torchvision(str(tmp_path / "googlenet.pth"), str(tmp_path / "googlenet.npz"))
    model = C.load_model(str(tmp_path / "googlenet.npz")).eval()
    assert model.variant == "torchvision" and model.aux_logits and model.num_classes == 10
    assert model.transform_input
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key], err_msg=key)
    x = md.tensor(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    source.transform_input = True
    with md.no_grad():
        np.testing.assert_allclose(model(x).numpy(), source(x).numpy(), rtol=1e-6)


def test_import_torchvision_rejects_other_models(tmp_path):

    w = PickleWriter()
    pkl = w.state_dict([("fc.weight", lambda: w.tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 1)))])
    write_archive(tmp_path / "other.pth", pkl, {"0": np.zeros(6, np.float32).tobytes()})
    with pytest.raises(C.CLIError, match="does not match torchvision's GoogLeNet"):
        C.import_torchvision(str(tmp_path / "other.pth"), str(tmp_path / "out.npz"))
    assert not (tmp_path / "out.npz").exists()


def _torchvision():
    torch = pytest.importorskip("torch")
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: lambda f: f  # its C++ ops need no fakes here
    try:
        models = pytest.importorskip("torchvision.models")
    finally:
        torch.library.register_fake = register_fake
    return torch, models


@pytest.mark.torch
@pytest.mark.parametrize("aux", [False, True])
def test_keys_and_shapes_equal_torchvisions(aux):
    torch, models = _torchvision()
    theirs = models.googlenet(weights=None, aux_logits=aux, init_weights=False).state_dict()
    ours = G.GoogLeNet(variant="torchvision", aux_logits=aux).state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == tuple(value.shape), key


@pytest.mark.torch
def test_logits_agree_with_torchvision(tmp_path):
    torch, models = _torchvision()
    torch.manual_seed(0)
    theirs = models.googlenet(weights=None, aux_logits=False, init_weights=True,
                              transform_input=True).eval()  # fmt: skip
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    C.import_torchvision(str(tmp_path / "tv.pth"), str(tmp_path / "tv.npz"))
    ours = C.load_model(str(tmp_path / "tv.npz")).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    with md.no_grad():
        got = ours(md.tensor(x)).numpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale


def test_cifar_model_default_is_the_command_lines_model():
    """One default: googlenet_cifar(0.25) is the model `python googlenet.py train` builds (the
    function defaulted to a true 5x5, 372,578 parameters, the CLI to 3x3, 348,770)."""
    from googlenet_cli import TRAIN_DEFAULTS

    assert TRAIN_DEFAULTS["kernel5"] == G.googlenet_cifar(0.25).kernel5 == 3
    assert G.googlenet_cifar(TRAIN_DEFAULTS["width"]).num_parameters() == 348_770
