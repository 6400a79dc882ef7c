# %% [markdown]
"""Lesson 3: broadcasting, and why backward sums gradients back to the input's shape.

What it teaches: when ``x + b`` adds a bias ``b`` of shape (3,) to a batch ``x`` of shape (4, 3),
NumPy quietly uses b once per row: four copies. Every copy sends a gradient back, and b must
receive their *sum*. That is ``sum_to``: the backward of broadcasting. We watch it for a row
vector, a column and a scalar, for a product, and we see the engine refuse an op that forgets it.

Run it: ``python examples/03_broadcasting.py``. Picture: ``examples/output/03_broadcasting.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_sum_to, report
from _lesson import parse_args, save

import minidl as md
from minidl.function import Function
from minidl.ops.arithmetic import sum_to

args = parse_args(__doc__.splitlines()[0])
out = args.output
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. Forward: a bias added to every row
# x is a batch of 4 samples with 3 features; b is one bias per feature. NumPy broadcasting lines
# the shapes up from the right, (4, 3) and (3,), and repeats b down the rows.

# %%
x = md.tensor(np.arange(12, dtype=np.float64).reshape(4, 3), requires_grad=True)
b = md.tensor([10.0, 20.0, 30.0], requires_grad=True)
y = x + b
print("x, shape", x.shape)
print(x.numpy())
print("b, shape", b.shape, "=", b.numpy())
print("y = x + b, shape", y.shape, "(b was used once per row, 4 times in all)")
print(y.numpy())

# %% [markdown]
# ## 2. Backward: each copy of b sends back a gradient, and they add up
# Take the loss L = sum(g * y) for a fixed matrix g, so that dL/dy = g exactly (a different number
# for every element, which makes the bookkeeping visible). Every y[i, j] depends on b[j], so
#
#     dL/db[j] = sum over rows i of g[i, j]
#
# while dL/dx = g, already the right shape.

# %%
g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [10.0, 11.0, 12.0]])
x.zero_grad()  # gradients accumulate: without this, running the cell again would double them
b.zero_grad()
(y * g).sum().backward()
print("upstream gradient g = dL/dy, shape", g.shape)
print(g)
print("x.grad (shape", x.grad.shape, ") equals g:", np.allclose(x.grad.numpy(), g))
print("b.grad (shape", b.grad.shape, ") =", b.grad.numpy())
print("column sums of g      =", g.sum(axis=0), " <- the same numbers")

# %% [markdown]
# ## 3. The rule: `sum_to(g, shape)`
# Broadcasting can (1) add leading axes and (2) stretch axes of size 1. Backward undoes both by
# summing: leading axes are summed away, stretched axes are summed with `keepdims`. The library's
# `sum_to` does exactly that; here it is on the three common cases.

# %%
for shape, meaning in [
    ((3,), "a row vector (per-feature bias): sum over the rows"),
    ((4, 1), "a column (one number per sample): sum along each row, keep the axis"),
    ((), "a scalar: everything it touched, summed"),
    ((4, 3), "same shape: nothing to sum, the gradient passes through"),
]:
    r = sum_to(g, shape)
    print(f"sum_to(g, {shape!s:<6}) -> shape {r.shape!s:<6} values {r.ravel()!s:<36} {meaning}")

# %% [markdown]
# Autograd applies that rule for you whatever the shapes. Check it on a column and a scalar:

# %%
c = md.tensor(np.ones((4, 1)), requires_grad=True)
s = md.tensor(1.0, requires_grad=True)
(x.detach() * c * s * g).sum().backward()
manual_c = (x.numpy() * g).sum(axis=1, keepdims=True)
print("column c (4, 1): c.grad =", c.grad.numpy().ravel(), " by hand:", manual_c.ravel())
print("scalar s ():     s.grad =", s.grad.numpy(), " by hand:", (x.numpy() * g).sum())

# %% [markdown]
# ## 4. Products broadcast too
# For y = x * a with a of shape (3,), dL/da[j] = sum over rows of g[i, j] * x[i, j]: the same
# summing, now of the products. A per-channel scale (as in batch norm's gamma) works this way.

# %%
a = md.tensor([1.0, -1.0, 0.5], requires_grad=True)
(x.detach() * a * g).sum().backward()
print("a.grad =", a.grad.numpy(), "  sum over rows of g * x =", (g * x.numpy()).sum(axis=0))

# %% [markdown]
# ## 5. What happens if an op forgets to sum
# Here is an addition whose backward hands the raw upstream gradient to both inputs. The engine
# checks every gradient's shape against its input and stops with a clear message, instead of
# letting a (4, 3) gradient silently meet a (3,) bias in the optimizer.


# %%
class ForgetfulAdd(Function):
    """y = a + b, with a WRONG backward: no sum_to, so b gets a gradient of y's shape."""

    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, gy


bad = ForgetfulAdd()(x, b)
try:
    bad.sum().backward()
except RuntimeError as err:
    print("the engine refused it:", err)

# %% [markdown]
# ## 6. Why it matters in a network: the bias of a layer sees the whole batch
# A linear layer's bias is broadcast over the batch, so its gradient is a sum over samples. With
# a summed loss it grows with the batch size; with a *mean* loss (what `cross_entropy` uses) the
# 1/N inside the mean keeps it the same size whatever the batch. Same data repeated, two losses:

# %%
rng = np.random.default_rng(0)
W = md.tensor(rng.standard_normal((2, 3)), requires_grad=True)
bias = md.tensor(np.zeros(2), requires_grad=True)
sample = rng.standard_normal((1, 3))
print(f"{'batch':>6} {'|bias.grad| with sum loss':>26} {'with mean loss':>15}")
for n in (1, 4, 16):
    batch = md.tensor(np.repeat(sample, n, axis=0))
    norms = []
    for reduce in ("sum", "mean"):
        bias.zero_grad()
        z = md.F.linear(batch, W, bias)
        (z.sum() if reduce == "sum" else z.sum() / n).backward()
        norms.append(np.linalg.norm(bias.grad.numpy()))
    print(f"{n:>6} {norms[0]:>26.3f} {norms[1]:>15.3f}")

# %% [markdown]
# ## 7. The picture
# Left: b repeated down the rows in the forward pass. Middle: the upstream gradient, one number
# per element of y. Right: what b receives, each column of the middle summed.


# %%
def grid(ax, values, title, cmap):
    values = np.atleast_2d(values)
    ax.imshow(values, cmap=cmap, vmin=0, vmax=values.max() * 1.3)
    for (i, j), val in np.ndenumerate(values):
        ax.text(j, i, f"{val:g}", ha="center", va="center", fontsize=12)
    ax.set_xticks(range(values.shape[1]), [f"feature {j}" for j in range(values.shape[1])])
    ax.set_yticks(range(values.shape[0]), [f"row {i}" for i in range(values.shape[0])])
    ax.set_title(title, fontsize=11)


fig, axes = plt.subplots(
    1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1, 1]}, constrained_layout=True
)
grid(
    axes[0],
    np.tile(b.numpy(), (4, 1)),
    "forward: b (3,) broadcast\nto every row of x (4, 3)",
    "Blues",
)
grid(axes[1], g, "backward: upstream gradient\ndL/dy, shape (4, 3)", "Oranges")
grid(axes[2], g.sum(axis=0), "dL/db = sum_to(dL/dy, (3,))\nthe columns summed, shape (3,)", "Reds")
axes[2].set_yticks([0], ["b"])
fig.suptitle("Broadcasting copies b forward, so backward adds the copies' gradients", fontsize=13)
save(fig, out / "03_broadcasting.png")

# %% [markdown]
# ## Exercise
# Write `sum_to` yourself: given an upstream gradient `g` and the shape an input had before
# broadcasting, return `g` summed back to that shape (leading axes that broadcasting added are
# summed away; axes where the input had size 1 are summed with keepdims). The check compares your
# function with minidl's on five shapes: (4, 3), (3,), (4, 1), (1, 3) and ().


# %%
def my_sum_to(g, shape):
    """Exercise: g summed back to ``shape`` (as minidl.ops.arithmetic.sum_to)."""
    return None  # your code here


report("exercise", check_sum_to(my_sum_to))
