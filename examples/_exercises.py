"""The lessons' exercise checks, in one place so that the tests can call them too.

Not a lesson itself. Each ``check_*`` takes the learner's answer and returns what to print after
"exercise N: ": "not done yet (...)" while the answer is still None, "correct", or "not yet: "
followed by what is wrong. The truth is computed with the library, never typed in, and a wrong
attempt's message never contains the right answer: it says where to look instead.
"""

from __future__ import annotations

import math

import numpy as np

import minidl as md
import minidl.functional as F

NOT_DONE = "not done yet ({} is None)"
CORRECT = "correct"


def report(label: str, verdict: str) -> None:
    """Print a check's verdict after its label, as in "exercise 1: correct"."""
    print(f"{label}: {verdict}")


def _close(mine, truth, rel: float = 1e-6) -> bool:
    return abs(mine - truth) <= rel * max(abs(truth), 1.0)


def _number(answer, name: str) -> str | None:
    """A message when ``answer`` is not a plain number (None when it is one)."""
    if isinstance(answer, bool) or not isinstance(answer, (int, float, np.number)):
        return f"not yet: {name} should be a number, got {type(answer).__name__}"
    return None


# Lesson 1 -------------------------------------------------------------------------------------


def check_cube_derivative(my_dydx) -> str:
    """Lesson 1, exercise 1: dy/dx of y = (x*w + b)^3 at x = 1.5, w = 2, b = -1."""
    if my_dydx is None:
        return NOT_DONE.format("my_dydx")
    if wrong := _number(my_dydx, "my_dydx"):
        return wrong
    x, w, b = (md.tensor(v, requires_grad=True) for v in (1.5, 2.0, -1.0))
    ((x * w + b) ** 3).backward()
    if _close(my_dydx, x.grad.item()):
        return CORRECT
    square = md.tensor(1.5, requires_grad=True)
    ((square * w.detach() + b.detach()) ** 2).backward()
    if _close(my_dydx, square.grad.item()):
        return "not yet: that is the square's dy/dx; the cube's outer derivative is 3 v^2"
    return (
        "not yet: autograd disagrees. dy/dx = (outer derivative, of the cube, at v = x*w + b) "
        "x (inner derivative, of x*w + b with respect to x)"
    )


def check_two_backwards(my_w_grad) -> str:
    """Lesson 1, exercise 2: w.grad after two backwards of (x*w + b)^2 without zero_grad."""
    if my_w_grad is None:
        return NOT_DONE.format("my_w_grad")
    if wrong := _number(my_w_grad, "my_w_grad"):
        return wrong
    x, w, b = (md.tensor(v, requires_grad=True) for v in (1.5, 2.0, -1.0))
    ((x * w + b) ** 2).backward()
    once = w.grad.item()
    ((x * w + b) ** 2).backward()
    if _close(my_w_grad, w.grad.item()):
        return CORRECT
    if _close(my_w_grad, once):
        return "not yet: that is one backward's dy/dw; the second backward adds to it"
    return "not yet: start from one backward's dy/dw (section 3), then think what the second adds"


# Lesson 2 -------------------------------------------------------------------------------------


def check_value_exp(value_exp, value_class) -> str:
    """Lesson 2, exercise 1: ``value_exp(v)`` gives the gradient of y = exp(a*c) * a."""
    a, c = value_class(0.3), value_class(-1.2)
    try:
        e = value_exp(a * c)
    except Exception as err:  # the learner's code: say what it raised, not a traceback
        return f"not yet: value_exp raised {type(err).__name__}: {err}"
    if e is None:
        return "not done yet (value_exp returns None)"
    if not isinstance(e, value_class):
        return f"not yet: value_exp should return a Value, got {type(e).__name__}"
    if not _close(e.data, math.exp(0.3 * -1.2), 1e-12):
        return "not yet: the forward value is wrong: the output's data should be e^(v.data)"
    (e * a).backward()
    ta, tc = (md.tensor(np.float64(v), requires_grad=True) for v in (0.3, -1.2))
    ((ta * tc).exp() * ta).backward()
    if _close(a.grad, ta.grad.item(), 1e-10) and _close(c.grad, tc.grad.item(), 1e-10):
        return CORRECT
    return (
        "not yet: the forward value is right but the gradients differ from minidl's: check "
        "the local derivative on the edge to v (what is d e^v / dv?)"
    )


def check_overwrite_prediction(my_wrong, value_class) -> str:
    """Lesson 2, exercise 2: which of dy/dx, dy/dw, dy/db of section 2's expression go wrong
    when backward assigns (=) a parent's gradient instead of adding (+=) to it."""
    if my_wrong is None:
        return NOT_DONE.format("my_wrong")
    if not isinstance(my_wrong, (set, frozenset, list, tuple)) or not set(my_wrong) <= {
        "x",
        "w",
        "b",
    }:
        return f'not yet: my_wrong should be a set of names among "x", "w", "b", got {my_wrong!r}'

    def overwriting_backward(y):
        y.grad = 1.0
        for v in reversed(y.topological_order()):
            for parent, local in v.edges:
                parent.grad = local * v.grad  # the bug: a second path replaces the first

    def grads(backward):
        x, w, b = value_class(1.5), value_class(-0.8), value_class(0.4)
        h = x * w + b
        backward(h.tanh() * w + h * h)
        return {"x": x.grad, "w": w.grad, "b": b.grad}

    right, overwritten = grads(lambda y: y.backward()), grads(overwriting_backward)
    wrong = {k for k in right if abs(right[k] - overwritten[k]) > 1e-12}
    mine = set(my_wrong)
    if mine == wrong:
        return CORRECT
    return (
        "not yet: that set is not the one. A gradient goes wrong when a value on its way to y "
        "is used more than once: follow each input's paths to y"
    )


# Lesson 3 -------------------------------------------------------------------------------------

SUM_TO_SHAPES = [(4, 3), (3,), (4, 1), (1, 3), ()]


def check_sum_to(my_sum_to) -> str:
    """Lesson 3's exercise: ``my_sum_to(g, shape)`` equals minidl's ``sum_to`` on five shapes."""
    from minidl.ops.arithmetic import sum_to

    g = np.random.default_rng(1).standard_normal((4, 3))
    for shape in SUM_TO_SHAPES:
        try:
            mine = my_sum_to(g, shape)
        except Exception as err:
            return f"not yet: my_sum_to(g, {shape}) raised {type(err).__name__}: {err}"
        if mine is None:
            return "not done yet (my_sum_to returns None)"
        if np.shape(mine) != shape:
            return f"not yet: for shape {shape} it returns shape {np.shape(mine)}"
        if not np.allclose(mine, sum_to(g, shape)):
            return f"not yet: for shape {shape} the shape is right but the values are not"
    return CORRECT


# Lesson 4 -------------------------------------------------------------------------------------


def check_best_step(my_k) -> str:
    """Lesson 4's exercise: the power of ten h = 10^k with the smallest central-difference error
    for d/dx sin(x) at x = 1 (within one power of ten)."""
    if my_k is None:
        return NOT_DONE.format("my_k")
    if wrong := _number(my_k, "my_k"):
        return wrong
    ks = np.arange(-1, -14, -1)
    hs = 10.0**ks
    errors = np.abs((np.sin(1 + hs) - np.sin(1 - hs)) / (2 * hs) - np.cos(1))
    best = int(ks[int(np.argmin(errors))])
    if abs(my_k - best) <= 1:
        return CORRECT
    side = (
        "too small: rounding error (1e-16 / h) dominates"
        if my_k < best
        else ("too large: truncation error (h^2) dominates")
    )
    return f"not yet: h = 1e{int(my_k)} is {side}; balance the two"


# Lesson 5 -------------------------------------------------------------------------------------


def backward_error(mine, truth) -> float:
    """The worst difference between two gradients, relative to the largest of ``truth``."""
    return float(np.abs(np.asarray(mine) - truth).max() / max(np.abs(truth).max(), 1e-12))


def check_backward(name: str, my_backward, args, truth, tol: float = 1e-6) -> str:
    """A learner's backward, called with ``args``, against ``truth`` (the numerical gradient)."""
    try:
        mine = my_backward(*args)
    except NotImplementedError:
        return f"not done yet ({name} raises NotImplementedError)"
    except Exception as err:
        return f"not yet: {name} raised {type(err).__name__}: {err}"
    if mine is None:
        return f"not done yet ({name} returns None)"
    if np.shape(mine) != np.shape(truth):
        return f"not yet: {name} returns shape {np.shape(mine)}, the input's is {np.shape(truth)}"
    err = backward_error(mine, truth)
    if err < tol:
        return CORRECT
    return f"not yet: {name} differs from the numerical gradient (relative error {err:.1e})"


# Lesson 6 -------------------------------------------------------------------------------------

NESTEROV = dict(lr=0.05, momentum=0.9, weight_decay=0.01)  # lesson 6, exercise 1's settings


def _sgd_path(p0, grads, **options) -> list:
    """The weights after each step of ``md.optim.SGD(**options)`` from ``p0``, fed ``grads``."""
    from minidl import nn

    w = nn.Parameter(np.array(p0, dtype=np.float64))
    opt = md.optim.SGD([w], **options)
    path = []
    for g in grads:
        w.grad = md.tensor(g)
        opt.step()
        path.append(w.numpy().copy())
    return path


def check_nesterov_step(my_step) -> str:
    """Lesson 6, exercise 1: ``my_step(p, grad, v, lr, mu, wd)`` returns the weights and the
    velocity after one step of SGD with Nesterov momentum and weight decay; five steps of it
    must follow ``md.optim.SGD(..., nesterov=True)``'s."""
    rng = np.random.default_rng(6)
    p0, grads = rng.standard_normal((3, 4)), rng.standard_normal((5, 3, 4))
    lr, mu, wd = NESTEROV["lr"], NESTEROV["momentum"], NESTEROV["weight_decay"]
    p, v, mine = p0.copy(), np.zeros_like(p0), []
    for g in grads:
        try:
            result = my_step(p.copy(), g.copy(), v.copy(), lr, mu, wd)
        except Exception as err:  # the learner's code: say what it raised, not a traceback
            return f"not yet: my_nesterov_step raised {type(err).__name__}: {err}"
        if result is None:
            return "not done yet (my_nesterov_step returns None)"
        if not (isinstance(result, tuple) and len(result) == 2):
            return "not yet: my_nesterov_step should return two arrays: (new p, new v)"
        p, v = (np.asarray(a, dtype=np.float64) for a in result)
        if p.shape != p0.shape or v.shape != p0.shape:
            return f"not yet: p and v should keep p's shape {p0.shape}, got {p.shape}, {v.shape}"
        mine.append(p)

    def follows(path):
        return all(np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(mine, path))

    if follows(_sgd_path(p0, grads, nesterov=True, **NESTEROV)):
        return CORRECT
    if follows(_sgd_path(p0, grads, **NESTEROV)):
        return (
            "not yet: that is plain momentum's step (section 5's loop); Nesterov's steps along "
            "something else: read the nesterov line in SGD's docstring (minidl/optim/sgd.py)"
        )
    if follows(_sgd_path(p0, grads, nesterov=True, **{**NESTEROV, "weight_decay": 0.0})):
        return "not yet: those are Nesterov's steps without weight decay: where did wd go?"
    if np.allclose(mine[0], _sgd_path(p0, grads[:1], nesterov=True, **NESTEROV)[0]):
        return (
            "not yet: the first step is right, the later ones are not: is the velocity updated, "
            "returned, and carried into the next step?"
        )
    return (
        "not yet: the first step already differs from SGD(nesterov=True)'s: start from the "
        "gradient with the decay term, then the velocity, then the step"
    )


def momentum_factor(mu: float = 0.95) -> float:
    """How many times larger than plain SGD's step SGD's step becomes, with momentum ``mu``,
    after many steps of one constant gradient (measured with md.optim.SGD)."""
    path = _sgd_path(np.zeros(1), np.ones((2000, 1)), lr=1.0, momentum=mu)
    return float(path[-2][0] - path[-1][0])


def check_momentum_factor(my_factor, mu: float = 0.95) -> str:
    """Lesson 6, exercise 2: that factor for mu = 0.95 (within 1%)."""
    if my_factor is None:
        return NOT_DONE.format("my_factor")
    if wrong := _number(my_factor, "my_factor"):
        return wrong
    if abs(my_factor / momentum_factor(mu) - 1) < 0.01:
        return CORRECT
    if abs(my_factor - 1) < 0.01:
        return "not yet: that is plain SGD's step (and momentum's first); the later ones grow"
    if abs(my_factor - (1 + mu)) < 0.01:
        return "not yet: that is the second step; follow the steps on to where they settle"
    if abs(my_factor - mu) < 0.01:
        return "not yet: that is mu itself; the factor compares a step with plain SGD's lr * g"
    return (
        "not yet: write the velocity after steps 1, 2 and 3 with the same g each time, then "
        "ask what that sum approaches"
    )


# Lesson 7 -------------------------------------------------------------------------------------


def _cols_shape():
    from minidl.ops.conv import im2col

    return im2col(np.zeros((2, 3, 8, 8)), 5, stride=2, padding=1).shape


def check_cols_shape(my_cols_shape) -> str:
    """Lesson 7, exercise 1: im2col's shape for x (2, 3, 8, 8), a 5x5 kernel, stride 2, pad 1."""
    if my_cols_shape is None:
        return NOT_DONE.format("my_cols_shape")
    shape = _cols_shape()
    mine = tuple(my_cols_shape)
    if mine == shape:
        return CORRECT
    if len(mine) != 6:
        return f"not yet: six numbers (N, Ho, Wo, kh, kw, C), you gave {len(mine)}"
    if mine[0] != shape[0] or mine[5] != shape[5]:
        return "not yet: N and C come straight from x's shape"
    if mine[3:5] != shape[3:5]:
        return "not yet: kh and kw are the kernel's size"
    return "not yet: Ho = (H + 2*padding - kernel) // stride + 1, and the same for Wo"


def check_conv_macs(my_macs) -> str:
    """Lesson 7, exercise 2: the multiply-adds of that convolution's GEMM with 16 filters."""
    if my_macs is None:
        return NOT_DONE.format("my_macs")
    if wrong := _number(my_macs, "my_macs"):
        return wrong
    shape = _cols_shape()
    if my_macs == int(np.prod(shape)) * 16:
        return CORRECT
    return (
        "not yet: the GEMM multiplies a (rows x K) matrix by a (K x O) one: rows = N*Ho*Wo, "
        "K = kh*kw*C, O = 16 filters; each of the rows x O outputs takes K multiply-adds"
    )


# Lesson 8 -------------------------------------------------------------------------------------


def _conv_macs(cin, cout, k, size=14):
    from minidl import nn
    from minidl.summary import profile

    layer = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    return profile(layer, md.tensor(np.zeros((1, cin, size, size), np.float32)))[""].macs


def check_bottleneck(my_without, my_with) -> str:
    """Lesson 8's exercise: 4a's 5x5 branch without the 1x1 reduction and with it."""
    if my_without is None or my_with is None:
        return "not done yet (set my_without and my_with)"
    without = _conv_macs(480, 48, 5)
    with_ = _conv_macs(480, 16, 1) + _conv_macs(16, 48, 5)
    wrong = []
    if my_without != without:
        wrong.append("my_without (48 filters of 5x5x480, at each of the 14x14 positions)")
    if my_with != with_:
        wrong.append("my_with (the 1x1: 16 filters of 1x1x480; the 5x5: 48 of 5x5x16)")
    if not wrong:
        return CORRECT
    return "not yet: check " + " and ".join(wrong)


# Lesson 9 -------------------------------------------------------------------------------------


def check_inception_4e_shape(my_shape) -> str:
    """Lesson 9's exercise: inception 4e's output shape for one 14x14 input."""
    from googlenet import INCEPTION_CHANNELS, Inception

    if my_shape is None:
        return NOT_DONE.format("my_shape")
    cin, *channels = INCEPTION_CHANNELS["4e"]
    with md.no_grad():
        shape = Inception(cin, *channels)(md.tensor(np.zeros((1, cin, 14, 14), np.float32))).shape
    mine = tuple(my_shape)
    if mine == tuple(shape):
        return CORRECT
    if len(mine) != 4:
        return f"not yet: four numbers (N, C, H, W), you gave {len(mine)}"
    if mine[2:] != tuple(shape[2:]):
        return "not yet: every branch keeps the 14x14 size (the padding sees to it)"
    if mine[1] == cin:
        return "not yet: that is the input's channel count; the output stacks the four branches'"
    return "not yet: the channels are the four branches' outputs (Table 1's row), added up"


# Lesson 10 ------------------------------------------------------------------------------------


def check_head_parameters(my_fc, my_gap) -> str:
    """Lesson 10's exercise: Linear(4*4*256, 10) and Linear(256, 10), weights and biases."""
    from minidl import nn

    if my_fc is None or my_gap is None:
        return "not done yet (set my_fc and my_gap)"
    fc, gap = nn.Linear(4 * 4 * 256, 10).num_parameters(), nn.Linear(256, 10).num_parameters()
    if (my_fc, my_gap) == (fc, gap):
        return CORRECT
    if (my_fc, my_gap) == (fc - 10, gap - 10):
        return "not yet: weights right, but each head also has one bias per class"
    wrong = [name for name, mine, truth in (("my_fc", my_fc, fc), ("my_gap", my_gap, gap))
             if mine != truth]  # fmt: skip
    return "not yet: " + " and ".join(wrong) + " (inputs x outputs weights, plus the biases)"


# Lesson 11 ------------------------------------------------------------------------------------


def check_he_std(my_std, fan_in: int) -> str:
    """Lesson 11, exercise 1: the weight std that keeps a ReLU layer's factor at 1 (within 5%)."""
    if my_std is None:
        return NOT_DONE.format("my_std")
    if wrong := _number(my_std, "my_std"):
        return wrong
    factor = fan_in * my_std**2 / 2  # the mean square a ReLU layer passes on
    if abs(factor - 1) < 0.05:
        return CORRECT
    size = "large: the signal grows" if factor > 1 else "small: the signal shrinks"
    return f"not yet: that std is too {size} by {factor:.3g}x per layer; Var(w) = gain^2 / fan_in"


def check_leaky_factor(my_factor) -> str:
    """Lesson 11, exercise 2: the default init's factor per layer with leaky ReLU, slope 0.2."""
    if my_factor is None:
        return NOT_DONE.format("my_factor")
    if wrong := _number(my_factor, "my_factor"):
        return wrong
    fan = 144  # cancels: the default's Var(w) is 1 / (3 fan_in)
    answer = fan * (1 / (3 * fan)) * (1 + 0.2**2) / 2
    if abs(my_factor / answer - 1) < 0.01:
        return CORRECT
    if abs(my_factor - 1 / 6) < 1e-3:
        return "not yet: 1/6 is plain ReLU's factor; leaky ReLU keeps more of the mean square"
    return "not yet: factor = fan_in x Var(w) x (the share of the mean square the activation keeps)"


# Lesson 12 ------------------------------------------------------------------------------------


def aux_weight_factor() -> float:
    """How much the gradient at aux1's convolution grows when the aux weight goes 0.3 -> 0.6."""
    from googlenet import googlenet_cifar
    from minidl import nn

    nn.init.manual_seed(0)
    net = googlenet_cifar(width=0.125, aux_logits=True).train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the same (no) masks for both weights
    imgs = md.tensor(np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32))
    tgts = md.tensor(np.arange(4))
    norms = []
    for weight in (0.3, 0.6):
        net.zero_grad()
        out = net(imgs)
        loss = F.cross_entropy(out.logits, tgts)
        loss = loss + weight * (F.cross_entropy(out.aux1, tgts) + F.cross_entropy(out.aux2, tgts))
        loss.backward()
        norms.append(float(np.linalg.norm(net.aux1.conv.conv.weight.grad.numpy())))
    return norms[1] / norms[0]


def check_aux_factor(my_factor) -> str:
    """Lesson 12's exercise: the factor measured by ``aux_weight_factor``."""
    if my_factor is None:
        return NOT_DONE.format("my_factor")
    if wrong := _number(my_factor, "my_factor"):
        return wrong
    if abs(my_factor - aux_weight_factor()) < 0.01:
        return CORRECT
    return (
        "not yet: aux1's convolution gets its gradient only through aux1's loss (the main "
        "head's path does not pass through it), and backward is linear in that loss's weight"
    )


# Lesson 13 ------------------------------------------------------------------------------------


def check_lrn_output(my_output) -> str:
    """Lesson 13's exercise: LRN's output at one channel of value 10 among zeros (4 decimals)."""
    if my_output is None:
        return NOT_DONE.format("my_output")
    if wrong := _number(my_output, "my_output"):
        return wrong
    xs = np.zeros((1, 5, 1, 1))
    xs[0, 2] = 10.0
    got = F.local_response_norm(md.tensor(xs), 5, alpha=1e-4, beta=0.75, k=1.0).numpy()[0, 2, 0, 0]
    if abs(my_output - got) < 1e-4:
        return CORRECT
    caffe = 10.0 / (1 + 1e-4 * 100) ** 0.75
    if abs(my_output - caffe) < 1e-4:
        return "not yet: that is Caffe's convention; PyTorch's divides alpha by size first"
    if my_output >= 10:
        return "not yet: the divisor is above 1, so the output is below a = 10"
    return "not yet: a / (k + alpha / size * a^2)^beta: check the order (power last, size first)"


# Lesson 14 ------------------------------------------------------------------------------------


def check_half_width_parameters(my_params) -> str:
    """Lesson 14, exercise 1: the CIFAR model's parameters at width 1/2 (within 5%)."""
    from googlenet import googlenet_cifar

    if my_params is None:
        return NOT_DONE.format("my_params")
    if wrong := _number(my_params, "my_params"):
        return wrong
    real = googlenet_cifar(width=0.5, kernel5=3).num_parameters()
    if abs(my_params / real - 1) < 0.05:
        return CORRECT
    quarter = googlenet_cifar(width=0.25, kernel5=3).num_parameters()
    if abs(my_params / quarter - 2) < 0.1:
        return "not yet: a convolution's weights grow with in x out channels, both doubled"
    return (
        "not yet: "
        + ("too many" if my_params > real else "too few")
        + (": almost every parameter is a convolution weight (in x out x kh x kw)")
    )


def check_aux_pool_size(my_size) -> str:
    """Lesson 14, exercise 2: the height the paper's 5x5/3 average pool makes of 16x16."""
    if my_size is None:
        return NOT_DONE.format("my_size")
    size = F.avg_pool2d(md.tensor(np.zeros((1, 1, 16, 16), np.float32)), 5, stride=3).shape[2]
    if my_size == size:
        return CORRECT
    return "not yet: output = (input - kernel) // stride + 1, no padding"


# Lesson 15 ------------------------------------------------------------------------------------


def check_steps_per_epoch(my_steps) -> str:
    """Lesson 15, exercise 1: optimizer steps in one epoch of 50,000 images in batches of 128,
    the last incomplete batch dropped (counted by a DataLoader)."""
    from minidl.data import DataLoader

    if my_steps is None:
        return NOT_DONE.format("my_steps")
    if wrong := _number(my_steps, "my_steps"):
        return wrong
    n, batch = 50_000, 128
    images = np.broadcast_to(np.zeros((1, 32, 32, 3), np.uint8), (n, 32, 32, 3))
    labels = np.zeros(n, np.int64)
    steps = len(DataLoader((images, labels), batch, drop_last=True))
    if my_steps == steps:
        return CORRECT
    if my_steps == len(DataLoader((images, labels), batch)):
        return "not yet: that counts the last, incomplete batch too, which drop_last drops"
    if my_steps != int(my_steps):
        return "not yet: a step takes a whole batch, so the count is a whole number"
    return "not yet: one step per full batch of 128: how many full batches do 50,000 images make?"


def check_batch_bytes_uint8(my_bytes) -> str:
    """Lesson 15, exercise 2: (uint8 bytes, float32 bytes) of one batch of 128 3x32x32 images."""
    if my_bytes is None:
        return NOT_DONE.format("my_bytes")
    if not (isinstance(my_bytes, (tuple, list)) and len(my_bytes) == 2):
        return f"not yet: my_bytes should be a pair (uint8 bytes, float32 bytes), got {my_bytes!r}"
    if any(_number(b, "my_bytes") for b in my_bytes):
        return "not yet: both entries of my_bytes should be numbers"
    batch = np.zeros((128, 3, 32, 32), np.uint8)
    sizes = (batch.nbytes, batch.astype(np.float32).nbytes)
    mine = tuple(my_bytes)
    if mine == sizes:
        return CORRECT
    if mine == sizes[::-1]:
        return "not yet: the right numbers in the wrong order: uint8 first, then float32"
    wrong = []
    if mine[0] != sizes[0]:
        wrong.append("the uint8 size (one byte per value: how many values in the batch?)")
    if mine[1] != sizes[1]:
        wrong.append("the float32 size (four bytes per value)")
    return "not yet: check " + " and ".join(wrong)


# Lesson 16 ------------------------------------------------------------------------------------


def check_batch_bytes(my_bytes) -> str:
    """Lesson 16's exercise: bytes of one batch moved to the GPU: 128 uint8 3x32x32 images and
    128 int64 labels (the arrays DataLoader(device="cuda") copies)."""
    if my_bytes is None:
        return NOT_DONE.format("my_bytes")
    if wrong := _number(my_bytes, "my_bytes"):
        return wrong
    images = np.zeros((128, 32, 32, 3), np.uint8)
    labels = np.zeros(128, np.int64)
    if my_bytes == images.nbytes + labels.nbytes:
        return CORRECT
    if my_bytes == images.nbytes:
        return "not yet: the images are right; the labels travel too"
    if my_bytes == np.zeros((128, 3, 32, 32), np.float32).nbytes + labels.nbytes:
        return "not yet: the images cross as uint8 (1 byte a value); float32 is made on the GPU"
    return "not yet: bytes = values x bytes per value: uint8 is 1 byte, int64 is 8"


# Lesson 17 ------------------------------------------------------------------------------------


def check_eval_prediction(my_prediction, agree: bool) -> str:
    """Lesson 17, exercise 1: whether the two models still agree in evaluation mode
    (``agree``: what the lesson measured)."""
    if my_prediction is None:
        return NOT_DONE.format("my_prediction")
    if not isinstance(my_prediction, bool):
        return f"not yet: my_prediction should be True or False, got {my_prediction!r}"
    if my_prediction == agree:
        return CORRECT
    return (
        "not yet: in evaluation mode batch norm uses its running mean and variance; did both "
        "models update those the same way in the step above?"
    )


def check_paper_block(block_class) -> str:
    """Lesson 17, exercise 2: ``block_class(cin, cout, k, padding)``, a PyTorch module, computes
    what minidl's ``ConvBlock(..., bn_eps=None)`` computes, with the same state-dict keys."""
    import torch

    from googlenet import ConvBlock

    try:
        theirs = block_class(3, 4, 3, padding=1).double()
    except NotImplementedError:
        return "not done yet (TorchPaperConvBlock raises NotImplementedError)"
    except Exception as err:
        return f"not yet: building TorchPaperConvBlock(3, 4, 3, padding=1) raised {err!r}"
    ours = ConvBlock(3, 4, 3, padding=1).double()
    state = ours.state_dict()
    keys = set(theirs.state_dict())
    if keys != set(state):
        extra = sorted(keys - set(state))
        said = f"entries minidl's block does not have: {', '.join(extra)}" if extra else ""
        lacking = len(set(state) - keys)
        if lacking:
            said += (
                "; " if said else ""
            ) + f"{lacking} {'entry' if lacking == 1 else 'entries'} missing"
        return f"not yet: its state dict has {said} (compare with ConvBlock in googlenet.py)"
    theirs.load_state_dict({k: torch.from_numpy(np.array(v.numpy())) for k, v in state.items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    try:
        with torch.no_grad():
            got = theirs(torch.from_numpy(x)).numpy()
    except Exception as err:
        return f"not yet: its forward raised {err!r}"
    with md.no_grad():
        want = ours(md.tensor(x)).numpy()
    if got.shape == want.shape and np.allclose(got, want, rtol=1e-10, atol=1e-12):
        return CORRECT
    return "not yet: the right parameters, but its forward computes something else than ConvBlock"
