"""Optimizers: several steps on a fixed least-squares problem against the update rules written
out in NumPy; state_dict resumes exactly; parameter groups; errors."""

from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl import nn, optim

A = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [1.5, 0.2, -0.7], [0.0, 1.0, 1.0]])
B = np.array([1.0, -2.0, 0.5, 3.0])
W0 = np.array([0.5, -0.3, 0.8])
STEPS = 6


def grad(w):
    """d/dw of 0.5 * |A w - b|^2 (the gradient is a function of w, so errors compound)."""
    return A.T @ (A @ w - B)


def run(make_opt, xp, steps=STEPS):
    p = nn.Parameter(xp.asarray(W0.copy()))
    opt = make_opt([p])
    for _ in range(steps):
        p.grad = md.Tensor(xp.asarray(grad(md.backend.to_numpy(p.data))))
        opt.step()
    return p.numpy()


def sgd_reference(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    w, buf = W0.copy(), None
    for _ in range(STEPS):
        g = grad(w) + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
    return w


def adam_reference(lr, betas, eps, weight_decay=0.0, decoupled=False, amsgrad=False):
    w, m, v, vmax = W0.copy(), np.zeros(3), np.zeros(3), np.zeros(3)
    b1, b2 = betas
    for t in range(1, STEPS + 1):
        g = grad(w)
        if decoupled:
            w = w * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1**t)
        v_hat = (vmax if amsgrad else v) / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


SGD_CASES = {
    "plain": dict(lr=0.05),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "weight decay": dict(lr=0.05, momentum=0.5, weight_decay=0.1),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_closed_form(case, xp):
    kw = SGD_CASES[case]
    got = run(lambda ps: optim.SGD(ps, **kw), xp)
    np.testing.assert_allclose(got, sgd_reference(**kw), rtol=1e-12, atol=1e-12)
    assert not np.allclose(got, W0)


ADAM_CASES = {
    "default": dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8),
    "weight decay (L2)": dict(lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.2),
    "amsgrad": dict(lr=0.1, betas=(0.9, 0.99), eps=1e-8, amsgrad=True),
}


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_closed_form(case, xp):
    kw = ADAM_CASES[case]
    got = run(lambda ps: optim.Adam(ps, **kw), xp)
    np.testing.assert_allclose(got, adam_reference(**kw), rtol=1e-12, atol=1e-12)


def test_adam_first_step_is_lr_times_sign():
    # bias correction: after one step m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    got = run(lambda ps: optim.Adam(ps, lr=0.01, eps=0.0), np, steps=1)
    np.testing.assert_allclose(got, W0 - 0.01 * np.sign(grad(W0)), rtol=1e-12)


def test_adamw_decoupled_decay_matches_closed_form(xp):
    kw = dict(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5)
    got = run(lambda ps: optim.AdamW(ps, **kw), xp)
    np.testing.assert_allclose(got, adam_reference(**kw, decoupled=True), rtol=1e-12, atol=1e-12)
    coupled = adam_reference(**kw)
    assert not np.allclose(got, coupled)  # really a different rule from Adam's L2
    assert optim.AdamW([nn.Parameter(np.zeros(1))]).defaults["weight_decay"] == 0.01


def test_float32_updates_stay_float32_in_place(xp):
    """An optimizer moves its parameters into its flat buffer once, when it is made; after that
    every step updates that same array in place."""
    p = nn.Parameter(xp.ones(4, dtype=xp.float32))
    for make in (lambda: optim.SGD([p], lr=0.1, momentum=0.9), lambda: optim.Adam([p])):
        opt = make()
        data = p.data
        for _ in range(3):
            p.grad = md.Tensor(xp.full(4, 0.5, dtype=xp.float32))
            opt.step()
            assert p.data is data and p.dtype == np.float32


def test_params_without_grad_are_skipped_and_zero_grad():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = md.Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(a.numpy(), [0, 0])
    np.testing.assert_array_equal(b.numpy(), [1, 1])
    opt.zero_grad()
    assert a.grad is None


def test_frozen_parameters_are_accepted_and_left_alone():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    for p in net[0].parameters():
        p.requires_grad = False
    frozen = net[0].weight.numpy().copy()
    opt = optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    net(md.tensor(np.ones((3, 2)))).sum().backward()
    opt.step()
    np.testing.assert_array_equal(net[0].weight.numpy(), frozen)
    assert net[0].weight.grad is None and net[1].weight.grad is not None
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(net[1].weight.grad.numpy(), 0)


def test_param_groups_have_their_own_lr():
    a, b = nn.Parameter(np.ones(1)), nn.Parameter(np.ones(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    a.grad, b.grad = md.Tensor(np.ones(1)), md.Tensor(np.ones(1))
    opt.step()
    np.testing.assert_allclose([a.item(), b.item()], [0.9, 0.5])
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})


def _train(model, opt, xs, ys):
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = ((model(md.tensor(x)) - md.tensor(y)) ** 2).mean()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
        lambda ps: optim.AdamW(ps, lr=0.01),
    ],
)
def test_state_dict_resumes_exactly_through_a_file(make, tmp_path):
    rng = np.random.default_rng(0)
    xs, ys = rng.standard_normal((8, 5, 3)), rng.standard_normal((8, 5, 2))
    nn.init.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    opt = make(list(model.parameters()))
    _train(model, opt, xs, ys)
    expected = {k: v.numpy() for k, v in model.state_dict().items()}

    model2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model2.load_state_dict(start)
    opt2 = make(list(model2.parameters()))
    _train(model2, opt2, xs[:4], ys[:4])
    md.save({"model": model2.state_dict(), "optimizer": opt2.state_dict()}, tmp_path / "c.npz")

    model3 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt3 = make(list(model3.parameters()))
    ckpt = md.load(tmp_path / "c.npz")
    model3.load_state_dict(ckpt["model"])
    opt3.load_state_dict(ckpt["optimizer"])
    _train(model3, opt3, xs[4:], ys[4:])
    for k, v in model3.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), expected[k], err_msg=k)


def test_state_dict_layout_and_mismatch_errors():
    ps = [nn.Parameter(np.ones(2)), nn.Parameter(np.ones(3))]
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    ps[0].grad = md.Tensor(np.ones(2))
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == [0]
    assert sd["param_groups"][0]["params"] == [0, 1] and sd["param_groups"][0]["lr"] == 0.1
    with pytest.raises(ValueError, match="group 0 has 2 parameters saved, 1 here"):
        optim.SGD([nn.Parameter(np.ones(2))], lr=0.1).load_state_dict(sd)


def test_argument_errors():
    p = [nn.Parameter(np.ones(1))]
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    x = md.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([x * 2], lr=0.1)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), optim.Adam])
def test_state_dict_from_a_model_with_other_shapes_is_refused(make):
    """Same number of parameters, other sizes (nn.Linear(4, 3) saved, nn.Linear(5, 3) here): a
    clear error naming the state, the parameter and both shapes, and the optimizer untouched."""
    saved_model = nn.Linear(4, 3)
    opt = make(saved_model.parameters())
    for p in saved_model.parameters():
        p.grad = md.Tensor(np.ones(p.shape, np.float32))
    opt.step()
    model = nn.Linear(5, 3)
    other = make(model.parameters())
    words = r"state '\w+' of parameter 0 has shape \(3, 4\), but that parameter has shape \(3, 5\)"
    with pytest.raises(ValueError, match=words):
        other.load_state_dict(opt.state_dict())
    assert other.state == {}


def _params(xp, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = [(3, 2), (4,), (2, 2, 3), (1,), (5, 1)]
    return [nn.Parameter(xp.asarray(rng.standard_normal(s).astype(dtype))) for s in shapes]


def _grads(xp, params, step, dtype=np.float64):
    rng = np.random.default_rng(100 + step)
    return [xp.asarray(rng.standard_normal(p.shape).astype(dtype)) for p in params]


def _run(xp, make, steps, textbook):
    """``steps`` updates with given gradients; ``textbook`` hands each gradient in as a fresh
    Tensor (not the flat buffer's view), which sends the step down the per-parameter path."""
    params = _params(xp)
    opt, calls = make(params), [0]
    update = opt._update

    def counted(*args):
        calls[0] += 1
        update(*args)

    opt._update = counted
    for t in range(steps):
        opt.zero_grad()
        loss = sum((p * md.Tensor(g)).sum() for p, g in zip(params, _grads(xp, params, t)))
        if textbook:
            for p, g in zip(params, _grads(xp, params, t)):
                p.grad = md.Tensor(g)
        else:
            loss.backward()
        opt.step()
    return [md.backend.to_numpy(p.data) for p in params], opt, calls[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda ps: optim.SGD(ps, lr=0.1),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=1e-3, amsgrad=True),
        lambda ps: optim.AdamW(ps, lr=0.01),
    ],
    ids=["sgd-nesterov", "sgd", "adam-amsgrad", "adamw"],
)
def test_flat_buffer_step_equals_the_textbook_bit_for_bit(xp, make):
    flat, flat_opt, flat_calls = _run(xp, make, 4, textbook=False)
    book, book_opt, book_calls = _run(xp, make, 4, textbook=True)
    assert flat_calls == 4 and book_calls == 4 * 5  # one update a step against one a parameter
    for a, b in zip(flat, book):
        np.testing.assert_array_equal(a, b)
    saved, want = flat_opt.state_dict(), book_opt.state_dict()
    assert saved["state"].keys() == want["state"].keys()
    for i, state in want["state"].items():
        for key, value in state.items():
            got = saved["state"][i][key]
            assert getattr(got, "shape", None) == getattr(value, "shape", None), key
            np.testing.assert_array_equal(
                md.backend.to_numpy(xp.asarray(got)), md.backend.to_numpy(xp.asarray(value))
            )


def test_flat_state_survives_a_checkpoint_and_a_moved_model(xp):
    """Resuming from state_dict continues bit for bit on the flat path; a parameter replaced
    behind the optimizer's back (as model.to does) is laid out again after one textbook step."""
    make = lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)  # noqa: E731
    whole, _, _ = _run(xp, make, 4, textbook=False)
    params = _params(xp)
    opt = make(params)
    for t in range(4):
        if t == 2:  # resume: new optimizer from the old one's state, parameters copied anew
            saved = opt.state_dict()
            params[1].data = params[1].data.copy()  # rebound: the flat layout is broken
            opt = make(params)
            opt.load_state_dict(saved)
        opt.zero_grad()
        sum((p * md.Tensor(g)).sum() for p, g in zip(params, _grads(xp, params, t))).backward()
        opt.step()
    for a, p in zip(whole, params):
        np.testing.assert_array_equal(a, md.backend.to_numpy(p.data))
    assert all(p.data is p._flat[0] for p in params)


def test_a_flat_step_launches_a_few_kernels_whatever_the_number_of_parameters():
    from minidl import backend

    with backend.simulate_cuda() as sim:
        on_device = [p.to("cuda").data for p in _params(np, dtype=np.float32)]
        params = [nn.Parameter(a.copy()) for a in on_device for _ in range(10)]
        opt = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        for step in range(2):
            for p in params:
                p.grad = None
            sum((p * 1.0).sum() for p in params).backward()
            sim.stats.reset()
            opt.step()
            assert sim.stats.launches <= 10, (step, sim.stats.launches)
