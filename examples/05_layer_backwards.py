# %% [markdown]
"""Lesson 5: the backward of each layer GoogLeNet is made of: derived, checked, then yours.

What it teaches: each layer's backward is a few lines of NumPy once the derivative is written
down. For linear, ReLU, softmax + cross-entropy, max pooling (2x2 windows), dropout, batch norm
and concatenation we derive the gradient, write it in NumPy here in the lesson, and assert that
it equals both minidl's backward and a numerical gradient (central differences from
``minidl.gradcheck``, lesson 4). Along the way: why the loss's gradient is (p - onehot) / N and
why softmax and log must be fused, where max pooling sends its gradient and what a tie does,
why dropout divides by 1 - p, and batch norm's backward twice: step by step and compact. The
exercises are yours to write: sigmoid, max pooling with overlapping windows, batch norm, local
response norm and average pooling, each checked against the numerical gradient.

Run it: ``python examples/05_layer_backwards.py``. Pictures: ``examples/output/05_*.png``.
"""

# %% [markdown]
# ## Set-up
# Every check below works the same way: a random upstream gradient `g` (lesson 4: never all
# ones), our NumPy backward given `g`, minidl's backward given `g`, and the central-difference
# gradient of sum(g * f(x)). `compare` prints the worst relative error of ours against each and
# asserts both are tiny, so a wrong derivation (or a broken op in the library) stops the lesson.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_backward, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from minidl.gradcheck import check_grad, numerical_grad
from minidl.ops.dropout import Dropout

args = parse_args(__doc__.splitlines()[0])
out = args.output
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.
errors = {}  # layer -> (worst error vs minidl, worst error vs numerical)


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def compare(name, fn, inputs, g, ours, tol=1e-6):
    """ours[i]: our gradient for inputs[i] (float64 arrays); fn: the minidl op on Tensors."""
    leaves = [md.tensor(a, requires_grad=True) for a in inputs]
    fn(*leaves).backward(g)
    vs_lib = max(rel_err(o, t.grad.numpy()) for o, t in zip(ours, leaves))
    vs_num = max(rel_err(o, numerical_grad(fn, inputs, g, index=i)) for i, o in enumerate(ours))
    errors[name] = (vs_lib, vs_num)
    print(f"  {name}: ours vs minidl {vs_lib:.1e}, ours vs numerical {vs_num:.1e}")
    if not (vs_lib < tol and vs_num < tol):
        raise AssertionError(
            f"{name}: our backward is wrong: relative error {vs_lib:.1e} against minidl's and "
            f"{vs_num:.1e} against the numerical gradient (a right one is below {tol:g}); "
            "check the derivation and its NumPy line by line"
        )


# %% [markdown]
# ## 1. Linear: y = x W^T + b
# x is N x in, W is out x in, b is out, y is N x out. Each y[n, o] = sum_i x[n, i] W[o, i] + b[o],
# so with g = dL/dy:
#
#     dL/dx[n, i] = sum_o g[n, o] W[o, i]       dx = g W
#     dL/dW[o, i] = sum_n g[n, o] x[n, i]       dW = g^T x
#     dL/db[o]    = sum_n g[n, o]               db = g summed over the batch (lesson 3)
#
# A shape check catches most mistakes: dW must be out x in, and g^T x is (out x N)(N x in).

# %%
rng = np.random.default_rng(4)
x = rng.standard_normal((4, 5))
W = rng.standard_normal((3, 5))
b = rng.standard_normal(3)
g = rng.standard_normal((4, 3))
print("linear, x 4x5, W 3x5:")
compare("linear", F.linear, [x, W, b], g, [g @ W, g.T @ x, g.sum(axis=0)])

# %% [markdown]
# ## 2. ReLU: y = max(x, 0)
# The local derivative is 1 where x > 0 and 0 elsewhere, so dx = g * (x > 0): the gradient
# passes where the input passed and stops where it was cut. (At exactly 0 there is no
# derivative; lesson 4 showed why the check keeps inputs away from 0.)

# %%
rng = np.random.default_rng(6)
x = rng.standard_normal((4, 6))
x[np.abs(x) < 0.05] = 0.5  # away from the kink
g = rng.standard_normal(x.shape)
print("relu:")
compare("relu", F.relu, [x], g, [g * (x > 0)])

# %% [markdown]
# ## 3. Softmax + cross-entropy: (p - onehot) / N
# For one sample with logits z and target class t: p = softmax(z), L = -log p_t. Write
# log p_t = z_t - log sum_k e^{z_k}; then
#
#     dL/dz_k = -(1[k = t] - e^{z_k} / sum_j e^{z_j}) = p_k - 1[k = t]
#
# and the mean over a batch of N divides by N: dL/dz = (p - onehot) / N. No Jacobian of softmax
# ever appears: taking the log first made everything cancel.

# %%
rng = np.random.default_rng(8)
N, K = 5, 4
z = rng.standard_normal((N, K))
t = rng.integers(0, K, N)
p = np.exp(z - z.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
onehot = np.eye(K)[t]
print("cross-entropy, 5 samples, 4 classes (a scalar loss, so the upstream g is one number):")
g = np.array(rng.standard_normal())
compare("cross_entropy", lambda a: F.cross_entropy(a, md.tensor(t)), [z], g, [g * (p - onehot) / N])

# %% [markdown]
# Why fused? Computed as two ops, softmax then log, large logits break it. e^1000 overflows;
# even with the max subtracted, the smallest probability underflows to exactly 0, its log is
# -inf, and the log's backward (1/p) divides by zero. The fused op computes
# log p = (z - max) - log sum e^(z - max), which never takes the log of a tiny number, and its
# gradient p - onehot needs no division at all.

# %%
z_big = np.array([[1000.0, 0.0, -1000.0]])
t_big = md.tensor(np.array([2]))
zs = md.tensor(z_big, requires_grad=True)
with np.errstate(all="ignore"):  # log(0) and 1/0: NumPy would warn, rightly
    p_two_ops = F.softmax(zs, axis=1)
    loss_two_ops = -(p_two_ops.log()[0, 2])
    loss_two_ops.backward()
zf = md.tensor(z_big, requires_grad=True)
loss_fused = F.cross_entropy(zf, t_big)
loss_fused.backward()
print(f"logits {z_big[0]}, target class 2:")
print(f"  softmax, then log: loss {loss_two_ops.item()}, gradient {zs.grad.numpy()[0]}")
print(f"  fused cross_entropy: loss {loss_fused.item()}, gradient {zf.grad.numpy()[0]}")
assert not np.isfinite(loss_two_ops.item()) and np.isfinite(loss_fused.item())
assert np.allclose(zf.grad.numpy(), [[1.0, 0.0, -1.0]])

# %% [markdown]
# ## 4. Max pooling: the gradient goes to the arg-max only
# y = max of a window. Nudging the winning element moves y one for one; nudging a loser does
# nothing. So each window's g goes to its arg-max and every other element gets 0. Written for
# 2x2 windows with stride 2: cut the image into windows, remember the winner's place, and
# put g back there. With overlapping windows (GoogLeNet's 3x3/2) an element can win two windows
# and receives both gradients: the `+=` of lesson 2 again.


# %%
rng = np.random.default_rng(12)


def maxpool2_forward(x):
    n, c, h, w = x.shape  # windows as the last axis: n, c, h/2, w/2, 4
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
    win = win.reshape(n, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)  # the winner's place in its window (the first one on a tie)
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def maxpool2_backward(g, arg, shape):
    n, c, h, w = shape
    dwin = np.zeros((n, c, h // 2, w // 2, 4))
    np.put_along_axis(dwin, arg[..., None], g[..., None], -1)
    return dwin.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) / 10.0  # distinct values: no ties
y, arg = maxpool2_forward(x)
assert np.array_equal(y, F.max_pool2d(md.tensor(x), 2).numpy())
g = rng.standard_normal(y.shape)
print("max pool 2x2/2 on 2x3x6x6 (no ties):")
compare("max_pool2d", lambda a: F.max_pool2d(a, 2), [x], g, [maxpool2_backward(g, arg, x.shape)])
five = rng.random((1, 1, 5, 5))
five[0, 0, 2, 2] = 10.0  # the centre lies in all four 3x3 windows (stride 2) and wins each
g = rng.standard_normal((1, 1, 2, 2))
lib = md.tensor(five, requires_grad=True)
F.max_pool2d(lib, 3, stride=2).backward(g)
print(
    f"  3x3/2 on 5x5, the centre wins all 4 windows: its gradient "
    f"{lib.grad.numpy()[0, 0, 2, 2]:.4f} = the sum of the 4 upstream values {g.sum():.4f}; "
    "every other element gets 0"
)
assert np.isclose(lib.grad.numpy()[0, 0, 2, 2], g.sum()) and np.count_nonzero(lib.grad.numpy()) == 1
res = check_grad(
    lambda a: F.max_pool2d(a, 3, stride=2), [rng.permutation(98).reshape(1, 2, 7, 7) / 10.0]
)
print(f"  minidl's 3x3/2 pooling vs numerical (tie-free 7x7 input): {res.max_rel_error:.1e}")

# %% [markdown]
# Ties: in the window [[1, 3], [3, 0]] two elements share the maximum. There the max has no
# derivative (a kink, like ReLU at 0): nudging either 3 up raises y, nudging it down does not.
# The central difference straddles the kink and gives each tied element 1/2. A backward must
# pick one valid answer; ours, minidl's and PyTorch's CPU kernel all give the whole gradient to
# the first maximum in reading order. Both are "right"; the check simply cannot be used there.

# %%
tie = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
_, arg_tie = maxpool2_forward(tie)
ours_tie = maxpool2_backward(np.ones((1, 1, 1, 1)), arg_tie, tie.shape)
lib_tie = md.tensor(tie, requires_grad=True)
F.max_pool2d(lib_tie, 2).sum().backward()
num_tie = numerical_grad(lambda a: F.max_pool2d(a, 2), [tie], np.ones((1, 1, 1, 1)), 0)
print("a tie, window [[1, 3], [3, 0]], upstream 1:")
print(
    f"  ours {ours_tie.ravel()}, minidl {lib_tie.grad.numpy().ravel()}, numerical {num_tie.ravel()}"
)
assert np.array_equal(ours_tie, lib_tie.grad.numpy())
assert np.allclose(num_tie.ravel(), [0, 0.5, 0.5, 0])

# %% [markdown]
# The picture: a 4x4 input, its 2x2 windows, and where the gradient lands.

# %%
img = np.array([[1, 4, 2, 0], [3, 2, 5, 7], [0, 6, 1, 1], [2, 1, 8, 3]], float)[None, None]
_, arg_img = maxpool2_forward(img)
g_img = np.array([[[[1.0, -2.0], [0.5, 3.0]]]])
d_img = maxpool2_backward(g_img, arg_img, img.shape)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
panels = [
    (img[0, 0], "input x (2x2 windows; red: each max)", "Greys"),
    (g_img[0, 0], "upstream gradient g (one per window)", "coolwarm"),
    (d_img[0, 0], "dx: each g lands on its window's max", "coolwarm"),
]
for ax, (a, title, cmap) in zip(axes, panels):
    lim = 1.6 * np.abs(a).max()  # pale colours, so the numbers stay readable; 0 is white
    ax.imshow(a, cmap=cmap, vmin=-lim if cmap == "coolwarm" else 0, vmax=lim)
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=14)
    for k in (0.5, 1.5, 2.5) if a.shape[0] == 4 else (0.5,):
        width = 2.5 if (a.shape[0] == 4 and k == 1.5) or a.shape[0] == 2 else 0.6
        ax.axhline(k, color="black", lw=width)
        ax.axvline(k, color="black", lw=width)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
for i, j in zip(*np.nonzero(d_img[0, 0])):  # the winners, outlined in the input
    axes[0].add_patch(plt.Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, ec="#c00000", lw=3))
fig.suptitle("Max pooling 2x2/2, backward: the gradient is routed to the arg-max, zeros elsewhere")
fig.tight_layout()
save(fig, out / "05_maxpool_backward.png")

# %% [markdown]
# ## 5. Dropout: why divide by 1 - p
# In training each element is kept with probability 1 - p, and kept ones are multiplied by
# 1/(1 - p) ("inverted" dropout, as PyTorch): the expected output is
# (1 - p) * x / (1 - p) = x, so evaluation can simply skip dropout. y = x * m with the mask
# m in {0, 1/(1 - p)}, so dx = g * m: the same mask, saved from forward.

# %%
rng = np.random.default_rng(18)
p_drop = 0.4
x = rng.standard_normal((3, 8))
mask = (rng.random(x.shape) >= p_drop) / (1 - p_drop)
g = rng.standard_normal(x.shape)
print("dropout p=0.4 with a fixed mask:")
compare("dropout", lambda a: Dropout(p_drop, mask)(a), [x], g, [g * mask])
np.random.seed(0)
draws = np.stack([F.dropout(md.tensor(np.ones(20_000)), p_drop).numpy() for _ in range(5)])
print(
    f"  mean of dropout(ones) over 100,000 draws: {draws.mean():.3f} (expected 1); "
    f"zeros {np.mean(draws == 0):.1%} (p = {p_drop:.0%}); survivors are {draws.max():.4g} = 1/(1-p)"
)
assert abs(draws.mean() - 1) < 0.02 and abs(draws.max() - 1 / (1 - p_drop)) < 1e-6

# %% [markdown]
# ## 6. Batch norm, step by step
# Per channel, over the m = N*H*W values it holds (training mode):
#
#     mu = mean(x)       xc = x - mu        var = mean(xc^2)       s = sqrt(var + eps)
#     xhat = xc / s      y = gamma * xhat + beta
#
# Backward walks the same steps in reverse, each a rule from lessons 1-3 (a mean's backward
# spreads g/m to every element; a value used twice, like xc, sums its two gradients):
#
#     dbeta = sum(g)           dgamma = sum(g * xhat)          dxhat = g * gamma
#     ds   = sum(dxhat * -xc / s^2)        dvar = ds / (2 s)
#     dxc  = dxhat / s + dvar * 2 xc / m   (xc feeds xhat and var)
#     dmu  = -sum(dxc)         dx = dxc + dmu / m               (x feeds xc and mu)

# %%
rng = np.random.default_rng(20)
x = rng.standard_normal((4, 3, 3, 3)) * 2 + 1
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
eps = 1e-5
axes, c = (0, 2, 3), (1, 3, 1, 1)  # statistics per channel; parameters broadcast as 1 x C x 1 x 1
m = x.size // x.shape[1]
mu = x.mean(axis=axes, keepdims=True)
xc = x - mu
var = (xc**2).mean(axis=axes, keepdims=True)
s = np.sqrt(var + eps)
xhat = xc / s
y = gamma.reshape(c) * xhat + beta.reshape(c)
g = rng.standard_normal(x.shape)

dbeta = g.sum(axis=axes)
dgamma = (g * xhat).sum(axis=axes)
dxhat = g * gamma.reshape(c)
ds = (dxhat * -xc / s**2).sum(axis=axes, keepdims=True)
dvar = ds / (2 * s)
dxc = dxhat / s + dvar * 2 * xc / m
dmu = -dxc.sum(axis=axes, keepdims=True)
dx_steps = dxc + dmu / m


def bn(a, w, bias):
    return F.batch_norm(a, None, None, w, bias, training=True, eps=eps)


print("batch norm (training mode) on 4x3x3x3, step by step:")
assert np.allclose(y, bn(*(md.tensor(v) for v in (x, gamma, beta))).numpy(), atol=1e-12)
compare("batch_norm (steps)", bn, [x, gamma, beta], g, [dx_steps, dgamma, dbeta])

# %% [markdown]
# ## 7. Batch norm, compact
# Substituting the steps into each other (ds, dvar and dmu are all per-channel sums) collapses
# them into one line, the form libraries implement (minidl's `ops/norm.py` too):
#
#     dx = (1 / s) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
#
# Read it as: the gradient dxhat, minus what the normalisation takes away, its mean (shifting
# all values does not change xhat) and its component along xhat (scaling them does not either).

# %%
dx_compact = (dxhat - dxhat.mean(axis=axes, keepdims=True)) - xhat * (dxhat * xhat).mean(
    axis=axes, keepdims=True
)
dx_compact /= s
print(
    f"  compact form vs step by step: largest difference {np.abs(dx_compact - dx_steps).max():.1e}"
)
assert np.allclose(dx_compact, dx_steps, atol=1e-12)
compare("batch_norm (compact)", bn, [x, gamma, beta], g, [dx_compact, dgamma, dbeta])
print(
    f"  each channel's dx sums to zero (shift invariance): "
    f"{np.abs(dx_compact.sum(axis=axes)).max():.1e}"
)

# %% [markdown]
# ## 8. Concatenation and split
# The Inception module concatenates its four branches on the channel axis. Concat only moves
# values, so its backward only moves gradients: each input gets its own slice of g. Split is
# the same thing backwards: its backward concatenates the slices' gradients.

# %%
rng = np.random.default_rng(24)
parts = [rng.standard_normal((2, ch, 3, 3)) for ch in (2, 4, 1)]
g = rng.standard_normal((2, 7, 3, 3))
edges = np.cumsum([0, 2, 4, 1])
print("concat of 2 + 4 + 1 channels, and split back:")
compare(
    "concat",
    lambda *ts: md.concat(ts, axis=1),
    parts,
    g,
    [g[:, lo:hi] for lo, hi in zip(edges[:-1], edges[1:])],
)
x = np.concatenate(parts, axis=1)
gs = [rng.standard_normal(a.shape) for a in parts]


def split_weighted(a):  # one scalar from the three pieces, so the check has a single output
    pieces = md.split(a, [2, 4, 1], axis=1)
    return sum((piece * md.tensor(w)).sum() for piece, w in zip(pieces, gs))


compare("split", split_weighted, [x], np.array(1.0), [np.concatenate(gs, axis=1)])

# %% [markdown]
# ## 9. Every layer, one picture
# The worst relative error of each of our derivations against minidl and against the numerical
# gradient. In float64 a right backward sits far below the 1e-6 line; a wrong one near 1.

# %%
fig, ax = plt.subplots(figsize=(12.5, 4.8))
names = list(errors)
pos = np.arange(len(names))
floor = 1e-17  # exact zeros drawn at the bottom
ax.bar(pos - 0.2, [max(e[0], floor) for e in errors.values()], 0.4, label="ours vs minidl")
ax.bar(pos + 0.2, [max(e[1], floor) for e in errors.values()], 0.4, label="ours vs numerical")
for k, (vs_lib, _) in enumerate(errors.values()):
    if vs_lib == 0:
        ax.text(k - 0.2, 3e-17, "bit for bit", rotation=90, ha="center", va="bottom", fontsize=8)
ax.axhline(1e-6, color="#c00000", ls="--", label="tolerance 1e-6")
ax.set_yscale("log")
ax.set_ylim(1e-17, 1)
ax.set_xticks(pos, [n.replace(" (", "\n(").replace("_", "_\n", 1) for n in names], fontsize=9)
ax.set(
    ylabel="worst relative error (log scale)", title="Derived backward passes, checked (float64)"
)
ax.grid(axis="y", alpha=0.3)
ax.legend(loc="upper left")
save(fig, out / "05_checks.png")

# %% [markdown]
# ## Exercises: write the backward yourself
# 1. Break a backward and watch the check catch it: in section 6 change `dvar * 2 * xc / m` to
#    `dvar * xc / m` and re-run the cell. Which gradient goes wrong, and why only that one?
#
# Then write six lines of NumPy or so per layer, for the layers GoogLeNet uses that the sections
# above did not derive. Each function below raises NotImplementedError until you fill it in; the
# check compares it with the numerical gradient (lesson 4) and says "correct", what is wrong, or
# "not done yet" (the lesson goes on either way). Worked answers are in `examples/_solutions.py`:
# open it after you have tried.
#
# 2. Sigmoid, y = 1 / (1 + e^-x): its backward in terms of y.
# 3. Max pooling with overlapping windows, GoogLeNet's 3x3/2: section 4's 2x2 code assumed the
#    windows do not overlap. Where two windows share an element, it collects both gradients.
# 4. Batch norm in training mode, dx only, in the compact form of section 7, from x, gamma and
#    g alone (recompute the mean, s and xhat).
# 5. Local response norm (GoogLeNet's stem; lesson 13), PyTorch's convention:
#    y_c = x_c / d_c^beta with d_c = k + alpha/size * (sum of x^2 over the channels c - size//2
#    .. c + (size-1)//2). Mind that x_c reaches the output twice: in its own y_c, and through
#    the d of every channel whose window holds c.
# 6. Average pooling, as in the auxiliary heads (5x5, stride 3) and before the classifier (7x7
#    over a 7x7 map): every element of a window gets its share of the window's gradient.


# %%
def sigmoid_backward(y, g):
    """Exercise 2: dL/dx for y = sigmoid(x), given y and the upstream g."""
    return None  # your code here


def maxpool_backward(x, g, k, stride):
    """Exercise 3: dL/dx for F.max_pool2d(x, k, stride), no padding, no ties in x."""
    raise NotImplementedError("exercise 3: your code here")


def batchnorm_backward(x, gamma, g, eps):
    """Exercise 4: dL/dx for F.batch_norm(x, ..., gamma, beta, training=True, eps=eps)."""
    raise NotImplementedError("exercise 4: your code here")


def lrn_backward(x, g, size, alpha, beta, k):
    """Exercise 5: dL/dx for F.local_response_norm(x, size, alpha, beta, k)."""
    raise NotImplementedError("exercise 5: your code here")


def avgpool_backward(g, x_shape, k, stride):
    """Exercise 6: dL/dx for F.avg_pool2d(x, k, stride), no padding; x has shape x_shape."""
    raise NotImplementedError("exercise 6: your code here")


# %% [markdown]
# The checks: each layer on a small random input, your backward against central differences.

# %%
rng = np.random.default_rng(30)
xs = rng.standard_normal((3, 4))
gs_ = rng.standard_normal(xs.shape)
num = numerical_grad(F.sigmoid, [xs], gs_, 0)
report(
    "exercise 2",
    check_backward("sigmoid_backward", sigmoid_backward, (1 / (1 + np.exp(-xs)), gs_), num),
)

xp = rng.permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 10.0  # distinct values: no ties
gp = rng.standard_normal((2, 3, 3, 3))
num = numerical_grad(lambda a: F.max_pool2d(a, 3, stride=2), [xp], gp, 0)
report("exercise 3", check_backward("maxpool_backward", maxpool_backward, (xp, gp, 3, 2), num))

xb = rng.standard_normal((4, 3, 3, 3)) * 2 + 1
gamma_b, beta_b = rng.standard_normal(3), rng.standard_normal(3)
gb = rng.standard_normal(xb.shape)
num = numerical_grad(lambda a: bn(a, md.tensor(gamma_b), md.tensor(beta_b)), [xb], gb, 0)
report(
    "exercise 4",
    check_backward("batchnorm_backward", batchnorm_backward, (xb, gamma_b, gb, eps), num),
)

xl = rng.standard_normal((2, 7, 3, 3)) * 3
gl = rng.standard_normal(xl.shape)
lrn_args = (5, 1e-2, 0.75, 1.0)  # alpha larger than GoogLeNet's 1e-4, so that d matters here
num = numerical_grad(lambda a: F.local_response_norm(a, *lrn_args), [xl], gl, 0)
report("exercise 5", check_backward("lrn_backward", lrn_backward, (xl, gl, *lrn_args), num))

xa = rng.standard_normal((2, 3, 8, 8))
ga = rng.standard_normal((2, 3, 2, 2))
num = numerical_grad(lambda a: F.avg_pool2d(a, 5, stride=3), [xa], ga, 0)
report(
    "exercise 6", check_backward("avgpool_backward", avgpool_backward, (ga, xa.shape, 5, 3), num)
)
