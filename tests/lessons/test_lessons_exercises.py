"""The lessons' exercise checks (examples/_exercises.py), each given a right and a wrong answer.

A right answer is "correct"; a wrong one is "not yet: " with a reason, and that reason never
contains the right answer (a check that prints the answer teaches nothing). Lesson 5's "write
the backward" checks are given the worked answers in examples/_solutions.py and broken ones.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.paths import ROOT

EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))  # as `python examples/NN_*.py` has it

import _exercises as ex  # noqa: E402
import _solutions as sol  # noqa: E402


class Value:
    """Lesson 2's scalar engine, as the lesson writes it (enough of it for exercise 1)."""

    def __init__(self, data, edges=(), op=""):
        self.data, self.edges, self.op, self.grad = float(data), edges, op, 0.0

    def __add__(self, other):
        return Value(self.data + other.data, ((self, 1.0), (other, 1.0)), "+")

    def __mul__(self, other):
        return Value(self.data * other.data, ((self, other.data), (other, self.data)), "*")

    def tanh(self):
        t = np.tanh(self.data)
        return Value(t, ((self, 1 - t * t),), "tanh")

    def topological_order(self):
        order, seen = [], set()

        def visit(v):
            if id(v) not in seen:
                seen.add(id(v))
                for parent, _ in v.edges:
                    visit(parent)
                order.append(v)

        visit(self)
        return order

    def backward(self):
        self.grad = 1.0
        for v in reversed(self.topological_order()):
            for parent, local in v.edges:
                parent.grad += local * v.grad


def exp_right(v):
    return Value(np.exp(v.data), ((v, np.exp(v.data)),), "exp")


def exp_wrong(v):
    return Value(np.exp(v.data), ((v, 1.0),), "exp")


def sum_to_right(g, shape):
    g = g.sum(axis=tuple(range(g.ndim - len(shape))))
    return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


def heavy_ball_step(p, grad, v, lr, mu, wd):  # lesson 6: plain momentum, not Nesterov's
    v = mu * v + grad + wd * p
    return p - lr * v, v


def nesterov_without_decay(p, grad, v, lr, mu, wd):
    v = mu * v + grad
    return p - lr * (grad + mu * v), v


def _torch_blocks():
    torch = pytest.importorskip("torch")

    class Right(torch.nn.Module):
        def __init__(self, cin, cout, k, padding=0):
            super().__init__()
            self.conv = torch.nn.Conv2d(cin, cout, k, padding=padding)

        def forward(self, x):
            return torch.relu(self.conv(x))

    class Wrong(torch.nn.Module):  # the CIFAR block: no bias, batch norm
        def __init__(self, cin, cout, k, padding=0):
            super().__init__()
            self.conv = torch.nn.Conv2d(cin, cout, k, padding=padding, bias=False)
            self.bn = torch.nn.BatchNorm2d(cout, eps=1e-3)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    return Right, Wrong


# (check, right answer(s), wrong answer(s), the right answer as a learner would read it)
CASES = {
    "lesson 1, exercise 1": (ex.check_cube_derivative, (24,), (12,), ["24"]),
    "lesson 1, exercise 1 (other slip)": (ex.check_cube_derivative, (24,), (8,), ["24"]),
    "lesson 1, exercise 2": (ex.check_two_backwards, (12,), (6,), ["12"]),
    "lesson 2, exercise 1": (
        ex.check_value_exp,
        (exp_right, Value),
        (exp_wrong, Value),
        ["np.exp(v.data)),", "e^v.data),"],
    ),
    "lesson 2, exercise 2": (
        ex.check_overwrite_prediction,
        ({"x", "w", "b"}, Value),
        ({"w"}, Value),
        ["'x'", "all three", "every"],
    ),
    "lesson 2, exercise 2 (none)": (
        ex.check_overwrite_prediction,
        ({"x", "w", "b"}, Value),
        (set(), Value),
        ["'x'", "all three", "every", "3"],
    ),
    "lesson 3": (ex.check_sum_to, (sum_to_right,), (lambda g, s: g.sum(axis=0),), ["keepdims"]),
    "lesson 4": (ex.check_best_step, (-5,), (-12,), ["-5", "1e-05", "1e-5"]),
    "lesson 4 (too large)": (ex.check_best_step, (-5,), (-1,), ["-5", "1e-05", "1e-5"]),
    "lesson 6, exercise 1": (
        ex.check_nesterov_step,
        (sol.nesterov_step,),
        (heavy_ball_step,),
        ["g + mu * v", "grad + mu", "mu * v"],
    ),
    "lesson 6, exercise 1 (no weight decay)": (
        ex.check_nesterov_step,
        (sol.nesterov_step,),
        (nesterov_without_decay,),
        ["g + mu * v", "grad + mu", "mu * v", "wd * p"],
    ),
    "lesson 6, exercise 2": (ex.check_momentum_factor, (20,), (1,), ["20", "1 / (1 - mu)"]),
    "lesson 6, exercise 2 (second step)": (
        ex.check_momentum_factor,
        (20,),
        (1.95,),
        ["20", "1 / (1 - mu)"],
    ),
    "lesson 7, exercise 1": (
        ex.check_cols_shape,
        ((2, 3, 3, 5, 5, 3),),
        ((2, 4, 4, 5, 5, 3),),
        ["(2, 3, 3, 5, 5, 3)", "3, 3, 5"],
    ),
    "lesson 7, exercise 2": (ex.check_conv_macs, (21600,), (0,), ["21600", "21,600"]),
    "lesson 8": (
        ex.check_bottleneck,
        (112_896_000, 5_268_480),
        (1, 1),
        ["112896000", "112,896,000", "5268480", "5,268,480"],
    ),
    "lesson 9": (
        ex.check_inception_4e_shape,
        ((1, 832, 14, 14),),
        ((1, 528, 14, 14),),
        ["832"],
    ),
    "lesson 10": (
        ex.check_head_parameters,
        (40_970, 2_570),
        (40_960, 2_560),
        ["40970", "40,970", "2570", "2,570"],
    ),
    "lesson 11, exercise 1": (
        ex.check_he_std,
        ((2 / 144) ** 0.5, 144),
        ((1 / 144) ** 0.5, 144),
        ["0.118", "0.1178", "sqrt(2 / 144)", "2/144"],
    ),
    "lesson 11, exercise 2": (ex.check_leaky_factor, (1.04 / 6,), (1 / 6,), ["0.173", "1.04"]),
    "lesson 11, exercise 2 (other slip)": (
        ex.check_leaky_factor,
        (1.04 / 6,),
        (0.52,),
        ["0.173", "1.04"],
    ),
    "lesson 12": (ex.check_aux_factor, (2,), (1,), ["2.0", "2x"]),
    "lesson 13": (ex.check_lrn_output, (9.9850,), (10,), ["9.98", "9.99"]),
    "lesson 13 (Caffe's alpha)": (ex.check_lrn_output, (9.9850,), (9.9257,), ["9.98", "9.99"]),
    "lesson 14, exercise 1": (
        ex.check_half_width_parameters,
        (4 * 348_770,),
        (2 * 348_770,),
        ["1395080", "1,395,080", "1,3"],
    ),
    "lesson 14, exercise 1 (too few)": (
        ex.check_half_width_parameters,
        (4 * 348_770,),
        (348_770,),
        ["1395080", "1,395,080", "1,3", "1.4"],
    ),
    "lesson 14, exercise 2": (ex.check_aux_pool_size, (4,), (5,), [" 4"]),
    "lesson 14, exercise 2 (rounding up)": (ex.check_aux_pool_size, (4,), (6,), [" 4"]),
    "lesson 15, exercise 1": (ex.check_steps_per_epoch, (390,), (391,), ["390"]),
    "lesson 15, exercise 1 (a fraction)": (ex.check_steps_per_epoch, (390,), (390.625,), ["390"]),
    "lesson 15, exercise 2": (
        ex.check_batch_bytes_uint8,
        ((393_216, 1_572_864),),
        ((393_216, 393_216),),
        ["393216", "393,216", "1572864", "1,572,864", "1.5"],
    ),
    "lesson 15, exercise 2 (float64)": (
        ex.check_batch_bytes_uint8,
        ((393_216, 1_572_864),),
        ((393_216, 3_145_728),),
        ["393216", "393,216", "1572864", "1,572,864", "1.5"],
    ),
    "lesson 16": (ex.check_batch_bytes, (394_240,), (393_216,), ["394240", "394,240"]),
    "lesson 16 (float32)": (ex.check_batch_bytes, (394_240,), (1_573_888,), ["394240", "394,240"]),
    "lesson 17, exercise 1": (ex.check_eval_prediction, (True, True), (False, True), ["True"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_right_answer_passes_and_a_wrong_one_is_told_why_without_the_answer(name):
    check, right, wrong, answer_texts = CASES[name]
    assert check(*right) == "correct", (name, check(*right))
    verdict = check(*wrong)
    assert verdict.startswith("not yet: ") and len(verdict) > len("not yet: ") + 10, verdict
    for text in answer_texts:
        assert text not in verdict, (name, text, verdict)


@pytest.mark.torch
def test_lesson_17_exercise_2_checks_the_block_a_learner_writes():
    right, wrong = _torch_blocks()
    assert ex.check_paper_block(right) == "correct"
    verdict = ex.check_paper_block(wrong)
    assert verdict.startswith("not yet: ") and "bn.weight" in verdict, verdict
    assert "conv.bias" not in verdict  # what the right block has is not named


def test_unanswered_exercises_say_so():
    for check in (ex.check_cube_derivative, ex.check_best_step, ex.check_lrn_output):
        assert check(None).startswith("not done yet")
    assert ex.check_eval_prediction(None, True).startswith("not done yet")
    assert ex.check_value_exp(lambda v: None, Value).startswith("not done yet")
    assert ex.check_nesterov_step(lambda *args: None).startswith("not done yet")
    assert ex.check_momentum_factor(None).startswith("not done yet")
    assert ex.check_steps_per_epoch(None).startswith("not done yet")
    assert ex.check_batch_bytes_uint8(None).startswith("not done yet")


def _backward_cases():
    """Lesson 5's exercises 2-6: (name, the learner's function's arguments, the numerical
    gradient, the worked answer, a broken one), built as the lesson builds them."""
    import minidl as md
    import minidl.functional as F
    from minidl.gradcheck import numerical_grad

    rng = np.random.default_rng(0)
    xs, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    y = 1 / (1 + np.exp(-xs))
    yield ("sigmoid", (y, g), numerical_grad(F.sigmoid, [xs], g, 0),
           sol.sigmoid_backward, lambda y, g: g * y)  # fmt: skip
    xp = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 10.0
    gp = rng.standard_normal((2, 3, 3, 3))
    num = numerical_grad(lambda a: F.max_pool2d(a, 3, stride=2), [xp], gp, 0)

    def maxpool_overwrites(x, g, k, stride):  # "=" where windows overlap: a gradient is lost
        dx = np.zeros_like(x)
        for i in range(g.shape[2]):
            for j in range(g.shape[3]):
                win = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
                r, q = np.unravel_index(win.reshape(*win.shape[:2], -1).argmax(-1), (k, k))
                n, c = np.indices(win.shape[:2])
                dx[n, c, i * stride + r, j * stride + q] = g[:, :, i, j]
        return dx

    yield ("max pool", (xp, gp, 3, 2), num, sol.maxpool_backward, maxpool_overwrites)
    xb, gamma, gb = rng.standard_normal((4, 3, 3, 3)) * 2 + 1, rng.standard_normal(3), None
    gb = rng.standard_normal(xb.shape)

    def bn(a):
        return F.batch_norm(a, None, None, md.tensor(gamma), md.tensor(np.zeros(3)),
                            training=True, eps=1e-5)  # fmt: skip

    num = numerical_grad(bn, [xb], gb, 0)
    yield ("batch norm", (xb, gamma, gb, 1e-5), num, sol.batchnorm_backward,
           lambda x, gm, g, eps: g * gm.reshape(1, -1, 1, 1))  # fmt: skip
    xl = rng.standard_normal((2, 7, 3, 3)) * 3
    gl = rng.standard_normal(xl.shape)
    lrn = (5, 1e-2, 0.75, 1.0)
    num = numerical_grad(lambda a: F.local_response_norm(a, *lrn), [xl], gl, 0)

    def lrn_direct_only(x, g, size, alpha, beta, k):  # forgets the path through d
        d = k + alpha / size * sol._window_sum(x * x, size)
        return g * d**-beta

    yield ("LRN", (xl, gl, *lrn), num, sol.lrn_backward, lrn_direct_only)
    xa, ga = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((2, 3, 2, 2))
    num = numerical_grad(lambda a: F.avg_pool2d(a, 5, stride=3), [xa], ga, 0)

    def avgpool_unscaled(g, shape, k, stride):  # the window's g to each element, not g / k^2
        return sol.avgpool_backward(g, shape, k, stride) * k * k

    yield ("average pool", (ga, xa.shape, 5, 3), num, sol.avgpool_backward, avgpool_unscaled)


@pytest.mark.parametrize("case", list(_backward_cases()), ids=lambda c: c[0])
def test_lesson_5_backward_checks_pass_the_worked_answer_and_refuse_a_broken_one(case):
    name, args, numerical, right, wrong = case
    assert ex.check_backward(name, right, args, numerical) == "correct"
    verdict = ex.check_backward(name, wrong, args, numerical)
    assert verdict.startswith("not yet: ") and "relative error" in verdict, verdict

    def stub(*_):
        raise NotImplementedError

    assert ex.check_backward(name, stub, args, numerical).startswith("not done yet")
