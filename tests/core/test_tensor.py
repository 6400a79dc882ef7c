"""Autograd engine: graph recording, backward order and accumulation, no_grad, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl.function import Function


def leaf(xp, values, dtype=np.float64):
    return md.Tensor(xp.asarray(values, dtype=dtype), requires_grad=True)


def test_scalar_chain_rule_by_hand(xp):
    x, w, b = (leaf(xp, v) for v in (2.0, 3.0, 1.0))
    y = (x * w + b) ** 2  # y = (xw + b)^2 = 49
    y.backward()
    # dy/dx = 2(xw+b) w = 42, dy/dw = 2(xw+b) x = 28, dy/db = 2(xw+b) = 14
    assert float(y.item()) == 49.0
    assert (x.grad.item(), w.grad.item(), b.grad.item()) == (42.0, 28.0, 14.0)


def test_backward_twice_accumulates_into_leaves(xp):
    a = leaf(xp, [1.0, 2.0])
    y = (a * a).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(md.backend.to_numpy(a.grad.data), [4.0, 8.0])


def test_shared_subexpression(xp):
    a = leaf(xp, [3.0])
    b = a + a
    c = b * b  # c = 4a^2, dc/da = 8a = 24
    c.backward(xp.ones(1))
    assert a.grad.item() == 24.0


def test_branch_used_twice_waits_for_all_gradients(xp):
    # z = exp(x) * exp(x) + exp(x): exp(x)'s gradient has three contributions that must all
    # arrive before Exp.backward runs, which the generation order guarantees.
    x = leaf(xp, [0.5])
    e = x.exp()
    z = e * e + e
    z.backward(xp.ones(1))
    expected = 2 * np.exp(1.0) + np.exp(0.5)
    np.testing.assert_allclose(x.grad.item(), expected, rtol=1e-12)


def test_intermediate_grads_are_freed_unless_retained(xp):
    x = leaf(xp, [1.0, 2.0])
    h = x * 3
    k = x * 4
    k.retain_grad()
    (h + k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(md.backend.to_numpy(k.grad.data), [1.0, 1.0])
    np.testing.assert_allclose(md.backend.to_numpy(x.grad.data), [7.0, 7.0])


def test_no_grad_records_nothing(xp):
    x = leaf(xp, [1.0])
    with md.no_grad():
        y = x * 2 + 1
    assert y.creator is None and not y.requires_grad
    assert md.is_grad_enabled()


def test_needs_input_grad_is_all_false_under_no_grad(xp):
    """Forward may read needs_input_grad to decide what to save for backward: under no_grad()
    no backward will run, so nothing is needed (ops need not check the grad mode themselves)."""
    seen = []

    class Probe(Function):
        def forward(self, a, b):
            seen.append(self.needs_input_grad)
            return a + b

    a, b = leaf(xp, [1.0]), md.Tensor(xp.ones(1))
    Probe()(a, b)
    with md.no_grad():
        Probe()(a, b)
    assert seen == [(True, False), (False, False)]


def test_graph_recorded_only_when_an_input_requires_grad(xp):
    a = md.Tensor(xp.ones(3))
    b = md.Tensor(xp.ones(3))
    assert (a + b).creator is None
    c = a + leaf(xp, np.ones(3))
    assert c.requires_grad and c.creator is not None


def test_detach_cuts_the_graph(xp):
    x = leaf(xp, [2.0])
    y = x * x
    d = y.detach()
    assert d.creator is None and not d.requires_grad
    z = d * x
    z.backward(xp.ones(1))
    assert x.grad.item() == 4.0  # only through the second factor


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b: a + b,
        lambda a, b: a * b - b / (a * a + 1),
        lambda a, b: (a @ b.T).sum(axis=1),
        lambda a, b: md.F.softmax(a, axis=-1) * md.F.sigmoid(b),
        lambda a, b: md.F.log_softmax(md.F.tanh(a) + md.F.relu(b), axis=0),
        lambda a, b: md.concat([a, b], axis=0).max(axis=0),
    ],
)
def test_float32_in_float32_out_and_grads(xp, fn):
    rng = np.random.default_rng(0)
    a = leaf(xp, rng.standard_normal((3, 4)), np.float32)
    b = leaf(xp, rng.standard_normal((3, 4)), np.float32)
    y = fn(a, b)
    assert y.dtype == np.float32
    y.backward(xp.ones(y.shape, np.float32))
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


def test_python_scalars_keep_the_tensor_dtype(xp):
    a = leaf(xp, [1.0, 2.0], np.float32)
    for y in (a + 1, 2 * a, 1 - a, a / 3, 3 / a, a**2):
        assert y.dtype == np.float32


FACTORY_CASES = {  # data, the dtype md.tensor (and torch.tensor) gives it
    "python float": (1.5, np.float32),
    "list of floats": ([1.0, 2.0], np.float32),
    "mixed list": ([[1, 2.5]], np.float32),
    "python int": (3, np.int64),
    "list of ints": ([1, 2], np.int64),
    "bool": (True, np.bool_),
    "float64 array": (np.ones(2), np.float64),
    "float32 array": (np.ones(2, np.float32), np.float32),
    "float16 array": (np.ones(2, np.float16), np.float16),
    "int32 array": (np.arange(3, dtype=np.int32), np.int32),
    "float64 scalar": (np.float64(2.0), np.float64),
}


@pytest.mark.parametrize("kind", FACTORY_CASES)
def test_tensor_factory_dtype_follows_torch_tensor(kind, device):
    """An array keeps its dtype (float64 stays float64); Python floats become float32, ints
    int64, as torch.tensor."""
    data, dtype = FACTORY_CASES[kind]
    assert md.tensor(data, device=device).dtype == dtype


@pytest.mark.torch
@pytest.mark.parametrize("kind", FACTORY_CASES)
def test_tensor_factory_dtype_table_is_torchs(kind):
    torch = pytest.importorskip("torch")
    data, dtype = FACTORY_CASES[kind]
    assert str(torch.tensor(data).dtype) == f"torch.{np.dtype(dtype)}"


def test_tensor_factory_copies_and_keeps_a_tensors_dtype():
    source = np.ones(2)
    t = md.tensor(source)
    source[0] = 5.0
    assert t.numpy()[0] == 1.0
    assert md.tensor(t).dtype == np.float64
    assert md.tensor(np.ones(2), dtype=np.float32).dtype == np.float32


def test_tensor_factory_defaults():
    t = md.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.ndim == 2 and t.device == "cpu" and t.is_leaf
    assert isinstance(t.numpy(), np.ndarray)


# ---------------------------------------------------------------------------- errors
def test_backward_on_non_scalar_needs_grad():
    y = md.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"scalar.*\(2, 3\)"):
        y.backward()


def test_backward_grad_shape_is_checked():
    y = md.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3,\)"):
        y.backward(np.ones(3))


def test_backward_through_tensor_without_grad():
    y = md.tensor([1.0]) * 2
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_matmul_inner_dimension_mismatch():
    a, b = md.tensor(np.ones((2, 3))), md.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"inner dimensions.*\(2, 3\).*\(4, 5\)"):
        a @ b


def test_concat_shape_mismatch():
    a, b = md.tensor(np.ones((2, 3))), md.tensor(np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"axis=0.*\(2, 3\).*\(2, 4\)"):
        md.concat([a, b], axis=0)


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="int"):
        md.tensor([1, 2], requires_grad=True)


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="'tpu'"):
        md.tensor([1.0], device="tpu")


@pytest.mark.skipif(md.is_gpu_available(), reason="checks the message shown without a GPU")
def test_cuda_without_cupy_or_gpu_says_what_is_missing():
    with pytest.raises(RuntimeError, match=r"CuPy|GPU"):
        md.tensor([1.0]).to("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not md.is_gpu_available(), reason="needs CuPy and a GPU")
def test_mixing_devices_names_both():
    a = md.tensor([1.0], device="cuda")
    b = md.tensor([1.0], device="cpu")
    with pytest.raises(ValueError, match=r"'cuda'.*'cpu'"):
        a + b


@pytest.mark.gpu
@pytest.mark.skipif(not md.is_gpu_available(), reason="needs CuPy and a GPU")
def test_to_cuda_and_back_round_trip():
    a = md.tensor([1.0, 2.0], requires_grad=True)
    b = a.to("cuda")
    assert b.device == "cuda" and b.requires_grad
    np.testing.assert_array_equal(b.to("cpu").numpy(), a.numpy())


def test_backward_checks_shapes_returned_by_an_op():
    class Broken(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy[:1]

    x = md.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"Broken.*\(1,\).*\(3,\)"):
        Broken()(x).sum().backward()


def test_leaf_gradients_never_alias_each_other_or_the_callers_array(xp):
    """A backward may hand one array to two inputs, or pass back (a view of) the caller's
    upstream gradient: a second backward, accumulated in place into .grad, must not leak into
    another leaf or the caller's g."""

    class SameArrayTwice(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            g = gy * 1.0  # fresh, but handed to both inputs
            return g, g

    a, b, c, d, e, f = (leaf(xp, [1.0, 2.0]) for _ in range(6))
    g = xp.asarray([1.0, 10.0])
    for _ in range(2):
        (a + b).backward(g)  # add passes g itself to both inputs
        SameArrayTwice()(c, d).backward(g)
        e.reshape(2, 1).backward(g.reshape(2, 1))  # a view of g comes back
        (f * 3.0).backward(g)  # a fresh array
    for t in (a, b, c, d, e):
        np.testing.assert_array_equal(md.backend.to_numpy(t.grad.data), [2.0, 20.0])
    np.testing.assert_array_equal(md.backend.to_numpy(f.grad.data), [6.0, 60.0])
    np.testing.assert_array_equal(md.backend.to_numpy(g), [1.0, 10.0])
