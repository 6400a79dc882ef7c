# %% [markdown]
"""Lesson 4: gradient checking, or how to trust a backward pass you wrote yourself.

What it teaches: a derivative can be estimated without calculus, by nudging the input both ways
(central differences). Comparing that estimate with backward's answer, as a *relative* error,
catches wrong backward code. We see why the nudge must be neither too big nor too small, why the
check runs in float64, why the upstream gradient must be random (not all ones), why kinks (ReLU at
0) fool it, and we watch the library's checker catch a deliberately broken op.

Run it: ``python examples/04_gradient_checking.py``. Pictures: ``examples/output/04_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_best_step, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from minidl.function import Function
from minidl.gradcheck import check_grad, numerical_grad

args = parse_args(__doc__.splitlines()[0])
out = args.output
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. A derivative from two function values
# For f(x) = tanh(x) the exact derivative is 1 - tanh(x)^2. Two estimates:
#
#     forward difference  (f(x + h) - f(x)) / h          error ~ h      (first order)
#     central difference  (f(x + h) - f(x - h)) / (2h)   error ~ h^2    (second order)
#
# Smaller h cuts that *truncation* error, but the two f values then agree in more and more digits
# and their difference is swamped by *rounding* error, about (machine epsilon * |f|) / h. The best
# h balances the two. float32 carries ~7 digits, float64 ~16: see what that does to the best error.

# %%
xs = np.linspace(-2, 2, 201)  # average over many points, so one lucky cancellation cannot fool us
exact = 1 - np.tanh(xs) ** 2
hs = np.logspace(-12, 0, 61)
errors = {}
for dtype in (np.float64, np.float32):
    x = xs.astype(dtype)
    for kind in ("central", "forward"):
        errs = []
        for h in hs:
            h_ = dtype(h)
            if kind == "central":
                est = (np.tanh(x + h_) - np.tanh(x - h_)) / (dtype(2) * h_)
            else:
                est = (np.tanh(x + h_) - np.tanh(x)) / h_
            errs.append(np.mean(np.abs(est.astype(np.float64) - exact) / exact))
        errors[(np.dtype(dtype).name, kind)] = np.maximum(errs, 1e-17)
print("d tanh(x)/dx = 1 - tanh(x)^2, estimated at 201 points in [-2, 2]")
print(f"{'dtype':<8} {'difference':<10} {'best mean relative error':>25} {'at h':>8}")
for (dtype, kind), errs in errors.items():
    k = int(errs.argmin())
    print(f"{dtype:<8} {kind:<10} {errs[k]:>25.1e} {hs[k]:>8.0e}")
best32 = errors[("float32", "central")].min()
print(f"float32 cannot do better than about {best32:.0e} with any h, and at a badly chosen h a")
print("correct op looks as wrong as a small bug. float64 reaches 1e-10 or better: that is why")
print("gradient checks run in float64 (check_grad refuses float32 inputs).")

fig, ax = plt.subplots(figsize=(8, 5))
styles = {"central": "-", "forward": "--"}
colors = {"float64": "#1f77b4", "float32": "#d62728"}
for (dtype, kind), errs in errors.items():
    ax.loglog(hs, errs, styles[kind], color=colors[dtype], label=f"{dtype}, {kind} difference")
ax.set(
    xlabel="step h",
    ylabel="mean relative error of the estimate",
    title="Numerical derivative of tanh: truncation error (right) vs rounding error (left)",
)
ax.set_ylim(1e-13, 10)
ax.grid(alpha=0.3, which="both")
ax.legend()
save(fig, out / "04_step_size.png")

# %% [markdown]
# ## 2. Many inputs: the vector-Jacobian product
# An op maps an array to an array. Backward does not build the whole Jacobian; given the upstream
# gradient g = dL/dy it returns dL/dx = J^T g. So the checker looks at the scalar
# L(x) = sum(g * f(x)) and nudges one input element at a time (two evaluations per element).
#
# The relative error |analytic - numerical| / max(|analytic|, |numerical|) is what we compare, so
# that a gradient of size 1e-5 and one of size 1e+3 are judged alike. In float64 a correct
# elementwise op on a few inputs gives about 1e-8 or less. Ops that sum many products (matmul,
# conv2d, batch norm), and above all the random-direction checks on big inputs (section 4), land
# higher, up to a few 1e-6: L(x + h) and L(x - h) are then sums of thousands of terms, and their
# rounding error (about 1e-16 x the size of the terms, divided by h) no longer vanishes. So every
# case in the library has its own stated tolerance: `python -m minidl.gradcheck` prints a `tol`
# column, 1e-6 for most, 1e-5 for the big directional conv2d check, which measures about 5e-6.
# A bug gives something near 1, whatever the op.

# %%
rng = np.random.default_rng(6)
x = rng.standard_normal((2, 5))
g = rng.standard_normal((2, 5))
xt = md.tensor(x, requires_grad=True, dtype=np.float64)
(F.softmax(xt) * md.tensor(g, dtype=np.float64)).sum().backward()
analytic = xt.grad.numpy()
numeric = numerical_grad(lambda t: F.softmax(t), [x], g, index=0)
rel = np.abs(analytic - numeric) / np.maximum(np.abs(analytic), np.abs(numeric))
print("softmax over 5 classes, 2 samples, random upstream g")
print("  analytic  dL/dx[0] =", np.round(analytic[0], 6))
print("  numerical dL/dx[0] =", np.round(numeric[0], 6))
print(f"  worst relative error {rel.max():.2e}")

# %% [markdown]
# ## 3. Why the upstream gradient must be random
# The tempting shortcut is g = all ones, i.e. checking sum(f(x)). For softmax that sum is 1 for
# every x, so its true gradient is exactly zero, and a backward that returns zeros (or anything
# tiny) would pass. A random g gives every output its own weight, so no output can hide.

# %%
ones = np.ones_like(x)
numeric_ones = numerical_grad(lambda t: F.softmax(t), [x], ones, index=0)
print(
    f"with g = ones: largest |numerical gradient| = {np.abs(numeric_ones).max():.1e}",
    "(nothing to see)",
)
print(f"with random g: largest |numerical gradient| = {np.abs(numeric).max():.3f}")

# %% [markdown]
# ## 4. The library's checker on real ops
# `check_grad(fn, inputs)` does all of the above: float64 inputs, a random upstream gradient, the
# full Jacobian for small inputs and random directions for big ones (a directional derivative
# (L(x + h v) - L(x - h v)) / 2h against sum(dL/dx * v)), and a report naming the worst element.

# %%
rng = np.random.default_rng(10)
cases = {
    "tanh": (lambda t: F.tanh(t), [rng.standard_normal((3, 4))]),
    "softmax": (lambda t: F.softmax(t, axis=1), [rng.standard_normal((3, 4))]),
    "matmul (big: random directions)": (
        lambda a, b: a @ b,
        [rng.standard_normal((30, 40)), rng.standard_normal((40, 20))],
    ),
    "(x*w + b)^2 from lesson 1": (
        lambda a, b, c: (a * b + c) ** 2,
        [rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(5)],
    ),
}
for name, (fn, inputs) in cases.items():
    res = check_grad(fn, inputs)
    print(f"{name}: {'PASS' if res.ok else 'FAIL'}")
    print("    " + res.report.replace("\n", "\n    "))

# %% [markdown]
# ## 5. A deliberately broken op, caught
# Here is a sigmoid whose backward forgot the (1 - y) factor: dx = gy * y instead of
# gy * y * (1 - y). It runs, it returns arrays of the right shape, a network using it would even
# train a little, and nothing but a gradient check would tell you. The checker fails it at once.


# %%
rng = np.random.default_rng(12)


class BrokenSigmoid(Function):
    """y = 1 / (1 + e^-x), with a WRONG backward: dx = gy * y (the (1 - y) factor is missing)."""

    def forward(self, x):
        self.y = 1 / (1 + np.exp(-x))
        return self.y

    def backward(self, gy):
        return gy * self.y


x = rng.standard_normal(40)
good = check_grad(lambda t: F.sigmoid(t), [x], raise_on_failure=False)
bad = check_grad(lambda t: BrokenSigmoid()(t), [x], raise_on_failure=False)
print(f"library sigmoid: ok={good.ok}, max relative error {good.max_rel_error:.1e}")
print(f"broken sigmoid:  ok={bad.ok}, max relative error {bad.max_rel_error:.2f}")
try:
    check_grad(lambda t: BrokenSigmoid()(t), [x])
except AssertionError as err:
    print("check_grad raised AssertionError, as a test would see it:")
    print("    " + str(err).replace("\n", "\n    "))

# %% [markdown]
# Plot the analytic gradient against the numerical one, element by element: a correct backward
# puts every point on the diagonal.

# %%
rng = np.random.default_rng(14)
upstream = rng.standard_normal(x.shape)
num = numerical_grad(lambda t: F.sigmoid(t), [x], upstream, index=0)
grads = {}
for name, op in (("library sigmoid", F.sigmoid), ("broken sigmoid", lambda t: BrokenSigmoid()(t))):
    t = md.tensor(x, requires_grad=True, dtype=np.float64)
    (op(t) * md.tensor(upstream, dtype=np.float64)).sum().backward()
    grads[name] = t.grad.numpy()

fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True)
lim = 1.1 * max(np.abs(num).max(), *(np.abs(v).max() for v in grads.values()))
for ax, (name, analytic) in zip(axes, grads.items()):
    err = np.abs(analytic - num).max() / np.abs(num).max()
    ax.plot([-lim, lim], [-lim, lim], color="gray", lw=1, label="analytic = numerical")
    ax.scatter(num, analytic, s=18, color="#2ca02c" if "library" in name else "#d62728")
    ax.set(
        xlabel="numerical gradient (central differences)",
        ylabel="analytic gradient (backward)",
        title=f"{name}\nlargest |analytic - numerical| = {err:.0e} x largest gradient",
        xlim=(-lim, lim),
        ylim=(-lim, lim),
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
fig.suptitle("A gradient check, element by element (40 inputs, random upstream gradient)")
fig.tight_layout()
save(fig, out / "04_broken_op.png")

# %% [markdown]
# ## 6. Kinks fool the check
# ReLU has no derivative at 0. If an input sits closer to 0 than the step h, the central difference
# straddles the kink and returns a value between the two slopes, while backward says 0 or 1. The
# op is fine; the *check* is wrong. That is why the library's checks feed ReLU, max and max pooling
# inputs that stay well away from kinks and ties (`minidl.registry.tie_free`).

# %%
for x_val in (0.5, 3e-7):
    est = numerical_grad(lambda t: F.relu(t), [np.array([x_val])], np.ones(1), index=0, eps=1e-6)
    print(
        f"relu at x = {x_val:g}: backward says 1,",
        f"central difference with h = 1e-6 says {est[0]:.3f}",
    )

# %% [markdown]
# ## Exercise
# The central difference's error has two parts: truncation, which shrinks like h^2, and
# rounding, which grows like (float64's 1e-16) / h. Predict the power of ten h = 10^k that gives
# the smallest error for d/dx sin(x) at x = 1, set `my_k`, and run the check (within one power
# of ten counts). Then say why the library's checks use h = 1e-6 and not 1e-12.

# %%
my_k = None  # exercise: an integer, e.g. -3


report("exercise", check_best_step(my_k))
