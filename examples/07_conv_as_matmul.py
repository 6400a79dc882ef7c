# %% [markdown]
"""Lesson 7: convolution as one matrix multiplication (im2col), and its backward (col2im).

What it teaches: a convolution slides a small kernel over an image and takes a dot product at
every position. ``im2col`` copies each of those image patches into one row of a matrix, so the
whole convolution becomes ``cols @ kernel``: one big matrix product, which BLAS does fast. We see
it on a 4x4 image as plain numbers, check it against the naive loop and ``F.conv2d``, then run the
backward pass by hand: the kernel's gradient is ``gy^T @ cols`` and the image's gradient is
``col2im(gy @ kernel)``, which adds every patch's gradient back onto the pixels it came from.

Run it: ``python examples/07_conv_as_matmul.py [--quick]``. Pictures: ``examples/output/07_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_cols_shape, check_conv_macs, report
from _lesson import parse_args, save
from matplotlib.patches import Rectangle

import minidl as md
import minidl.functional as F
from minidl.gradcheck import check_grad
from minidl.ops.conv import col2im, im2col

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
np.set_printoptions(linewidth=120)

# %% [markdown]
# ## 1. A tiny image and a kernel
# One image (N=1) with one channel (C=1), 4x4 pixels numbered 1 to 16, and one 3x3 kernel that
# adds up the patch's main diagonal, with weights 1, 2 and 1 (easy to check by eye). With stride 1
# and no padding the kernel fits in 2x2 positions, so the output is 2x2.

# %%
x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)  # N x C x H x W
w = np.array([[1.0, 0, 0], [0, 2, 0], [0, 0, 1]]).reshape(1, 1, 3, 3)  # O x C x kh x kw
print("image x (4x4):")
print(x[0, 0])
print("kernel w (3x3):")
print(w[0, 0])

# %% [markdown]
# ## 2. The naive loop: a dot product per output position
# For every output position (i, j), multiply the 3x3 patch under the kernel by the kernel and sum.
# This is the definition; it is also slow, because Python runs the loop one position at a time.


# %%
def naive_conv2d(x, w, stride=1, padding=0):
    """Reference convolution by four loops (no bias). x (N, C, H, W), w (O, C, kh, kw)."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    y = np.zeros((N, O, Ho, Wo), x.dtype)
    for n in range(N):
        for o in range(O):
            for i in range(Ho):
                for j in range(Wo):
                    patch = xp[n, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[n, o, i, j] = (patch * w[o]).sum()
    return y


y_naive = naive_conv2d(x, w)
print("naive loop output (2x2): the top-left value is 1*1 + 2*6 + 1*11 =", 1 + 2 * 6 + 11)
print(y_naive[0, 0])

# %% [markdown]
# ## 3. im2col: every patch becomes a row
# `im2col(x, 3)` returns the patches as an array (N, Ho, Wo, kh, kw, C); viewed as a matrix it has
# one row per output position (N*Ho*Wo = 4 rows) and one column per kernel tap (kh*kw*C = 9).
# Pixels appear in several rows: the centre pixels 6, 7, 10, 11 sit in all four patches.

# %%
cols = im2col(x, 3)
print("im2col(x) has shape", cols.shape, "= (N, Ho, Wo, kh, kw, C)")
C_rows = cols.reshape(4, 9)
for r, row in enumerate(C_rows):
    print(f"  row {r} (output position {divmod(r, 2)}): {row}")

# %% [markdown]
# ## 4. The convolution is now one matrix product
# Lay the kernel out in the same (kh, kw, C) order as the rows, as a column: then
# `cols @ w_col` computes all four dot products at once. Reshape the 4 results to 2x2: the same
# numbers as the loop, and as the library's `F.conv2d`.

# %%
w_col = w.transpose(0, 2, 3, 1).reshape(1, 9).T  # (kh*kw*C, O)
y_gemm = (C_rows @ w_col).reshape(2, 2)
y_lib = F.conv2d(md.tensor(x, dtype=np.float64), md.tensor(w, dtype=np.float64)).numpy()
print("cols @ w_col, reshaped to 2x2:")
print(y_gemm)
print("equal to the naive loop:", np.allclose(y_gemm, y_naive[0, 0]))
print("equal to F.conv2d:     ", np.allclose(y_gemm, y_lib[0, 0]))

# %% [markdown]
# The picture: the four patches outlined on the image, the im2col matrix with its rows in the same
# colours, and the output.

# %%
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
fig, axes = plt.subplots(
    1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [4, 9, 2.4]}, constrained_layout=True
)
ax = axes[0]
ax.imshow(x[0, 0], cmap="Greys", vmin=-8, vmax=30)
for (i, j), v in np.ndenumerate(x[0, 0]):
    ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=12)
for r, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    inset = 0.04 + 0.06 * r  # nest the outlines so that all four stay visible
    ax.add_patch(
        Rectangle(
            (j - 0.5 + inset, i - 0.5 + inset),
            3 - 2 * inset,
            3 - 2 * inset,
            fill=False,
            ec=colors[r],
            lw=2.5,
        )
    )
ax.set_title("image x (4x4): the four 3x3 patches")
ax.set_xticks(range(4))
ax.set_yticks(range(4))
ax.set(xlabel="column", ylabel="row")

ax = axes[1]
ax.imshow(C_rows, cmap="Greys", vmin=-8, vmax=30)
for (i, j), v in np.ndenumerate(C_rows):
    ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=12)
ax.set_yticks(range(4), [f"patch {r}" for r in range(4)])
for r, label in enumerate(ax.get_yticklabels()):
    label.set_color(colors[r])
ax.set_xticks(range(9), [f"({u},{v})" for u in range(3) for v in range(3)])
ax.set(xlabel="kernel tap (u, v)", title="im2col(x): one row per patch (4 x 9)")

ax = axes[2]
ax.imshow(y_gemm, cmap="Oranges", vmin=0, vmax=1.3 * y_gemm.max())
for (i, j), v in np.ndenumerate(y_gemm):
    ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=12)
ax.set_xticks(range(2))
ax.set_yticks(range(2))
ax.set(title="y = cols @ w (2x2)\nw: diagonal 1, 2, 1", xlabel="column", ylabel="row")
fig.suptitle("Convolution as a matrix product: im2col, then one GEMM", fontsize=13)
save(fig, out / "07_im2col.png")

# %% [markdown]
# ## 5. More channels, padding and stride
# With C input channels a row holds kh*kw*C numbers. minidl orders each row as (u, v, c), i.e.
# channels last, because that copies faster from an NHWC buffer; PyTorch-style code uses (c, u, v).
# Any order works as long as the kernel is laid out the same way. Padding adds zeros: the first
# patch of a padded image starts outside it.

# %%
rng = np.random.default_rng(0)
x2 = rng.standard_normal((2, 3, 5, 5))
w2 = rng.standard_normal((4, 3, 3, 3))
for stride, padding in ((1, 0), (1, 1), (2, 1)):
    c2 = im2col(x2, 3, stride=stride, padding=padding)
    N, Ho, Wo, kh, kw, C = c2.shape
    y2 = c2.reshape(N * Ho * Wo, -1) @ w2.transpose(0, 2, 3, 1).reshape(4, -1).T
    y2 = y2.reshape(N, Ho, Wo, 4).transpose(0, 3, 1, 2)  # rows were (n, i, j): back to NCHW
    ok = np.allclose(y2, naive_conv2d(x2, w2, stride, padding))
    print(
        f"stride {stride}, padding {padding}: cols {N * Ho * Wo} x {kh * kw * C}, "
        f"output {N}x4x{Ho}x{Wo}, matches the loop: {ok}"
    )
first = im2col(x2, 3, padding=1)[0, 0, 0]  # (kh, kw, C): the top-left patch
print("top-left patch with padding 1, channel 0, as (u, v):")
print(np.round(first[:, :, 0], 2), " <- zeros where the patch hangs over the border")

# %% [markdown]
# ## 6. Backward by hand
# Take L = sum(g * y) with a random upstream gradient g = dL/dy, viewed as a (N*Ho*Wo, O) matrix
# like y. Since y = cols @ w_col is a matrix product, its two gradients are matrix products too:
#
#     dL/dw_col = cols^T @ g          (each kernel tap: sum over patches of pixel * gradient)
#     dL/dcols  = g @ w_col^T         (each patch's gradient, as rows)
#     dL/dx     = col2im(dL/dcols)    (scatter every row back onto its pixels, ADDING overlaps)
#
# col2im is the mirror image of im2col: where im2col copied a pixel into several rows, col2im
# sums those rows' gradients into that pixel (the same rule as broadcasting in lesson 3).

# %%
g = np.array([[1.0, -2.0], [0.5, 3.0]]).reshape(1, 1, 2, 2)
g_rows = g.transpose(0, 2, 3, 1).reshape(4, 1)  # (N*Ho*Wo, O)
dw_hand = (C_rows.T @ g_rows).T.reshape(1, 3, 3, 1).transpose(0, 3, 1, 2)
dcols = (g_rows @ w_col.T).reshape(cols.shape)
dx_hand = col2im(dcols, (4, 4))

xt = md.tensor(x, requires_grad=True, dtype=np.float64)
wt = md.tensor(w, requires_grad=True, dtype=np.float64)
(F.conv2d(xt, wt) * md.tensor(g, dtype=np.float64)).sum().backward()
print("upstream gradient g (2x2):")
print(g[0, 0])
print("dL/dw by hand (cols^T @ g):")
print(dw_hand[0, 0])
print("equal to autograd's w.grad:", np.allclose(dw_hand, wt.grad.numpy()))
print("dL/dx by hand (col2im(g @ w^T)):")
print(np.asarray(dx_hand)[0, 0])
print("equal to autograd's x.grad:", np.allclose(dx_hand, xt.grad.numpy()))

# %% [markdown]
# col2im of a matrix of ones counts how many patches each pixel belongs to: corners 1, edges 2,
# centre 4. Those counts are how many gradient terms each pixel adds up. And im2col and col2im are
# *adjoint*: for any x and any C, sum(im2col(x) * C) = sum(x * col2im(C)). That identity is exactly
# what makes col2im the correct backward of im2col.

# %%
rng = np.random.default_rng(18)
coverage = np.asarray(col2im(np.ones_like(cols), (4, 4)))[0, 0]
print("patches covering each pixel (col2im of ones):")
print(coverage)
Crand = rng.standard_normal(cols.shape)
lhs = float((im2col(x, 3) * Crand).sum())
rhs = float((x * col2im(Crand, (4, 4))).sum())
print(f"adjoint check: sum(im2col(x) * C) = {lhs:.6f}, sum(x * col2im(C)) = {rhs:.6f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), constrained_layout=True)
panels = [
    (g[0, 0], "upstream gradient g = dL/dy (2x2)", "coolwarm"),
    (np.asarray(dx_hand)[0, 0], "dL/dx = col2im(g @ w^T) (4x4)", "coolwarm"),
    (coverage, "patches covering each pixel\n(col2im of ones)", "Greens"),
]
for ax, (values, title, cmap) in zip(axes, panels):
    lim = np.abs(values).max()
    signed = cmap == "coolwarm"  # white at zero, red positive, blue negative
    ax.imshow(values, cmap=cmap, vmin=-lim if signed else 0, vmax=lim if signed else 1.2 * lim)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=12)
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.set(title=title, xlabel="column", ylabel="row")
fig.suptitle("Backward of a convolution: col2im adds each patch's gradient back onto its pixels")
save(fig, out / "07_col2im.png")

# %% [markdown]
# ## 7. The gradient check agrees, and the matrix product is what makes it fast
# The library's conv2d passes the float64 check of lesson 4. Then time the naive loop against
# our own im2col + one GEMM on a small batch: the loop pays Python's overhead once per output
# value, the GEMM once per layer. `F.conv2d` is timed too: it is built on the same idea but may
# take faster routes for some shapes (a 1x1 convolution needs no im2col at all), so it can be
# faster still; the result is the same.

# %%
rng = np.random.default_rng(20)
res = check_grad(
    lambda a, b, c: F.conv2d(a, b, c, stride=1, padding=1),
    [rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
)
print(f"check_grad(conv2d, padding 1): ok={res.ok}, max relative error {res.max_rel_error:.1e}")


def best_ms(fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return 1000 * best, result


size = 8 if args.quick else 16
xb = rng.standard_normal((4, 16, size, size)).astype(np.float32)
wb = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
wb_col = wb.transpose(0, 2, 3, 1).reshape(32, -1).T  # (kh*kw*C, O), the rows' (u, v, c) order


def im2col_gemm():
    c = im2col(xb, 3, padding=1)
    y = c.reshape(-1, c.shape[3] * c.shape[4] * c.shape[5]) @ wb_col
    return y.reshape(4, size, size, 32).transpose(0, 3, 1, 2)


t_loop, ref = best_ms(lambda: naive_conv2d(xb, wb, padding=1), reps=1)
t_gemm, ours = best_ms(im2col_gemm)
t_lib, lib = best_ms(lambda: F.conv2d(md.tensor(xb), md.tensor(wb), padding=1).numpy())
print(f"batch 4 x 16 channels x {size}x{size}, 32 filters of 3x3 (best of 3):")
print(f"  naive loop        {t_loop:8.1f} ms")
print(f"  im2col + GEMM     {t_gemm:8.1f} ms   ({t_loop / t_gemm:.0f}x faster than the loop)")
print(f"  F.conv2d          {t_lib:8.1f} ms")
same = np.allclose(ref, ours, atol=1e-3) and np.allclose(ref, lib, atol=1e-3)
print(f"  all three give the same output: {same}")

# %% [markdown]
# ## Exercises
# 1. For x of shape (2, 3, 8, 8) and a 5x5 kernel with stride 2 and padding 1, predict the shape
#    of `im2col`'s result (N, Ho, Wo, kh, kw, C), set `my_cols_shape`, and check.
# 2. With 16 such filters, how many multiply-adds does the convolution's one matrix product do?
#    (rows x K x O), set `my_macs`, and check.

# %%
my_cols_shape = None  # exercise 1: a tuple of six integers
my_macs = None  # exercise 2: an integer


report("exercise 1", check_cols_shape(my_cols_shape))
report("exercise 2", check_conv_macs(my_macs))
