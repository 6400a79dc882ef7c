# %% [markdown]
"""Lesson 13: batch norm and local response norm, side by side.

What it teaches: both layers divide activations by something, but by very different things.
Local response normalisation (LRN, AlexNet 2012; in GoogLeNet's stem) divides each value by the
energy of the same pixel in its 5 neighbouring *channels*: a fixed formula, no learning, no batch.
Batch normalisation (BN, 2015; in torchvision's GoogLeNet and our CIFAR model) standardises each
*channel* over the whole batch and all positions to mean 0 and variance 1, then rescales it with
learned gamma and beta. We compute both by hand and with the library, compare activation
histograms, look at LRN's response curve, follow activation scales through a 12-layer stack,
and see BN's train/eval difference.

Run it: ``python examples/13_batchnorm_vs_lrn.py [--quick]``.
Pictures: ``examples/output/13_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_lrn_output, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from minidl import nn

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
nn.init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. A batch of activations
# Caffe's GoogLeNet (bvlc_googlenet) was fed raw pixels (0-255) minus one mean per channel: 104,
# 117 and 123 for blue, green and red (Caffe reads images in BGR order; `mean_value` in its
# train_val.prototxt). Nothing divides by a standard deviation, so the first activations are in
# the tens and hundreds. Here: 32 random "images" on that scale through a 3x3 convolution to 16
# channels. Each channel ends up with its own scale.

# %%
rng = np.random.default_rng(4)
nn.init.manual_seed(4)
n_img = 16 if args.quick else 32
images = md.tensor(rng.uniform(-128, 128, (n_img, 3, 32, 32)).astype(np.float32))
conv = nn.Conv2d(3, 16, 3, padding=1)
with md.no_grad():
    pre = conv(images)  # N x 16 x 32 x 32, before the ReLU
    act = F.relu(pre)
a = act.numpy()
print(f"activations {act.shape}: mean {a.mean():.1f}, std {a.std():.1f}, max {a.max():.1f}")
print("per channel (first 6):  mean " + " ".join(f"{m:6.1f}" for m in a.mean(axis=(0, 2, 3))[:6]))
print("                         std " + " ".join(f"{s:6.1f}" for s in a.std(axis=(0, 2, 3))[:6]))

# %% [markdown]
# ## 2. Batch norm: standardise each channel over (batch, height, width)
#
#     mean_c = average of x[:, c, :, :]     var_c = average of (x[:, c, :, :] - mean_c)^2
#     y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c       (gamma = 1, beta = 0 at start)
#
# In GoogLeNet's blocks BN sits between the convolution and the ReLU. By hand and with
# `nn.BatchNorm2d` in training mode:

# %%
bn = nn.BatchNorm2d(16)
bn.train()
with md.no_grad():
    bn_out = bn(pre)
p = pre.numpy()
mean_c = p.mean(axis=(0, 2, 3), keepdims=True)
var_c = p.var(axis=(0, 2, 3), keepdims=True)
by_hand = (p - mean_c) / np.sqrt(var_c + 1e-5)
print(f"BN by hand equals nn.BatchNorm2d: {np.allclose(by_hand, bn_out.numpy(), atol=1e-4)}")
b = bn_out.numpy()
print("after BN, per channel:   mean " + " ".join(f"{m:6.2f}" for m in b.mean(axis=(0, 2, 3))[:6]))
print("                          std " + " ".join(f"{s:6.2f}" for s in b.std(axis=(0, 2, 3))[:6]))
bn_act = np.maximum(b, 0)  # then the ReLU, as in ConvBlock

# %% [markdown]
# ## 3. Local response norm: divide by the energy of 5 neighbouring channels
#
#     y_c = x_c / (k + alpha/size * sum over c' = c-2 .. c+2 of x_c'^2) ^ beta
#
# with Caffe's values size 5, alpha 1e-4, beta 0.75, k 1 (PyTorch's convention, used by minidl:
# alpha is divided by size, like Caffe; TensorFlow's `tf.nn.lrn` and Chainer leave it undivided,
# so their alpha must be multiplied by 5 here). Each pixel is normalised on its own: no batch,
# nothing learned.

# %%
lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
with md.no_grad():
    lrn_out = lrn(act).numpy()
# one large activation (away from the first and last 2 channels), checked by hand
n_, c_, i_, j_ = np.unravel_index(a[:, 2:-2].argmax(), a[:, 2:-2].shape)
c_ += 2
window = a[n_, c_ - 2 : c_ + 3, i_, j_]
divisor = (1.0 + 1e-4 / 5 * (window**2).sum()) ** 0.75
print(
    f"x[{n_}, {c_}, {i_}, {j_}] = {a[n_, c_, i_, j_]:.3f}; channels {c_ - 2}-{c_ + 2} there: "
    f"{np.round(window, 1)}"
)
print(
    f"divisor (1 + 1e-4/5 * {(window**2).sum():.0f}) ^ 0.75 = {divisor:.4f}; "
    f"by hand {a[n_, c_, i_, j_] / divisor:.4f}, library {lrn_out[n_, c_, i_, j_]:.4f}"
)
ratio = lrn_out[a > 1] / a[a > 1]
print(
    f"over all positive activations LRN multiplies by {ratio.min():.3f} .. {ratio.max():.3f} "
    f"(median {np.median(ratio):.3f}): it shrinks the large values, keeps the small ones"
)

# %% [markdown]
# ## 4. Histograms: what each one does to the distribution
# LRN compresses the big activations but leaves the overall scale and each channel's own scale
# as they were. BN moves every channel to the same standard scale (and, before the ReLU, to mean
# 0, so about half the values become exactly 0 after it).

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
panels = [
    (a, "conv -> ReLU (no normalisation)", "#7f7f7f"),
    (lrn_out, "conv -> ReLU -> LRN (size 5, alpha 1e-4)", "#ff7f0e"),
    (bn_act, "conv -> BN -> ReLU", "#1f77b4"),
]
for ax, (values, title, color) in zip(axes, panels):
    pos_vals = values[values > 0].ravel()
    ax.hist(pos_vals, bins=60, color=color, log=True)
    ax.set(
        title=title,
        xlabel="activation value (positive ones; zeros left out)",
        ylabel="count (log scale)",
    )
    ax.text(
        0.97,
        0.95,
        f"{(values == 0).mean():.0%} exactly 0\nmean {values.mean():.2f}\n"
        f"std {values.std():.2f}\nmax {values.max():.1f}",
        transform=ax.transAxes,
        ha="right",
        va="top",
        bbox=dict(fc="white", ec="gray"),
    )
    ax.grid(alpha=0.3)
fig.suptitle("The same activations, three ways: LRN divides locally, BN standardises each channel")
fig.tight_layout()
save(fig, out / "13_histograms.png")

# %% [markdown]
# ## 5. LRN's response curve
# Feed a pixel whose 5 neighbouring channels all hold the value v. For small v the divisor is
# about 1 and LRN does nothing; only beyond v ~ sqrt(1/alpha) = 100 does it bite, and for large v
# the output falls like v^(1 - 2*beta) = v^-0.5. On unit-scale activations (as after BN) LRN with
# these constants is practically the identity, one reason it disappeared from later networks.

# %%
v = np.logspace(-1, 4, 200)
fig, ax = plt.subplots(figsize=(7.5, 5))
ax.loglog(v, v, "--", color="gray", label="identity (no normalisation)")
for alpha, color in ((1e-3, "#d62728"), (1e-4, "#ff7f0e"), (1e-5, "#bcbd22")):
    x5 = md.tensor(np.repeat(v[None, None, :], 5, axis=1)[..., None])  # 1 x 5 x 200 x 1
    y5 = F.local_response_norm(x5, 5, alpha=alpha, beta=0.75, k=1.0).numpy()[0, 2, :, 0]
    ax.loglog(
        v, y5, color=color, label=f"LRN, alpha = {alpha:g}" + (" (Caffe)" if alpha == 1e-4 else "")
    )
ax.set(
    xlabel="input v (all 5 neighbouring channels equal to v)",
    ylabel="LRN output",
    title="LRN only acts on large activations (size 5, beta 0.75, k 1)",
)
ax.grid(alpha=0.3, which="major")
ax.legend()
save(fig, out / "13_lrn_response.png")

# %% [markdown]
# ## 6. Through a 12-layer stack
# Repeat conv (16 channels) -> [norm] -> ReLU twelve times and track the activations' standard
# deviation. Without normalisation it first shrinks by a constant factor per layer, about
# sqrt(6) = 2.45 with the default initialisation (lesson 11 derives it), then, from about layer
# 8, levels off: the convolutions' biases add the same small amount to every layer whatever comes
# in, and the shrinking stops where the two balance (lesson 11, section 4). That floor is no
# help in backward, where biases add nothing and the gradient keeps shrinking (lesson 12). LRN
# cannot change any of this, it only trims large values; BN resets every layer to the same
# scale, which is also what keeps gradients alive in backward.

# %%
rng = np.random.default_rng(14)
nn.init.manual_seed(14)
depth = 12
stack = [nn.Conv2d(3 if i == 0 else 16, 16, 3, padding=1) for i in range(depth)]
bns = [nn.BatchNorm2d(16) for _ in range(depth)]
x0 = md.tensor(rng.uniform(-128, 128, (8, 3, 16, 16)).astype(np.float32))
stds = {"no normalisation": [], "LRN after each ReLU": [], "BN before each ReLU": []}
with md.no_grad():
    for name in stds:
        h = x0
        for conv_i, bn_i in zip(stack, bns):
            h = conv_i(h)
            if name.startswith("BN"):
                h = bn_i(h)
            h = F.relu(h)
            if name.startswith("LRN"):
                h = lrn(h)
            stds[name].append(float(h.numpy().std()))
print(f"{'layer':>5}" + "".join(f"{n:>24}" for n in stds))
for i in range(depth):
    print(f"{i + 1:>5}" + "".join(f"{s[i]:>24.3g}" for s in stds.values()))
plain = np.array(stds["no normalisation"])
shrink = (plain[1] / plain[5]) ** (1 / 4)
print(
    f"no normalisation: {shrink:.2f}x smaller per layer over layers 2-6 (lesson 11: about "
    f"{np.sqrt(6):.2f}), then level: layers 9-12 within {plain[8:].max() / plain[8:].min():.2f}x"
)
assert 2 < shrink < 3.2 and plain[8:].max() / plain[8:].min() < 2

fig, ax = plt.subplots(figsize=(8, 4.8))
colors = {
    "no normalisation": "#7f7f7f",
    "LRN after each ReLU": "#ff7f0e",
    "BN before each ReLU": "#1f77b4",
}
for name, s in stds.items():
    ax.semilogy(range(1, depth + 1), s, "o-", color=colors[name], label=name)
ax.set(
    xlabel="layer",
    ylabel="std of the activations (log scale)",
    title="Activation scale through 12 conv layers (input on the 0-255 pixel scale)",
)
ax.set_xticks(range(1, depth + 1))
ax.grid(alpha=0.3)
ax.legend()
save(fig, out / "13_depth.png")

# %% [markdown]
# ## 7. Batch norm in training vs evaluation
# In training BN uses the statistics of the current batch, so one image's output depends on the
# other images next to it. It also keeps running averages (momentum 0.1), and in evaluation
# (`eval()`) it uses those, so the output depends on the image alone. LRN has no such modes.

# %%
rng = np.random.default_rng(16)
bn = nn.BatchNorm2d(16)
one = pre.numpy()[:1]
outs = []
for k in range(2):
    others = rng.standard_normal((7, 16, 32, 32)).astype(np.float32) * (5 + 40 * k)
    batch = md.tensor(np.concatenate([one, others]))
    bn.train()
    with md.no_grad():
        outs.append(bn(batch).numpy()[0])
print(
    f"train mode, the same image in two different batches: outputs differ by up to "
    f"{np.abs(outs[0] - outs[1]).max():.2f}"
)
bn.train()
with md.no_grad():
    for _ in range(40):  # each step moves the running averages 10% of the way to the batch's
        bn(pre)
bn.eval()
with md.no_grad():
    e1 = bn(md.tensor(np.concatenate([one, one * 0])))
    e2 = bn(md.tensor(np.concatenate([one, one * 3])))
print(
    f"eval mode: the same image in two different batches: outputs differ by "
    f"{np.abs(e1.numpy()[0] - e2.numpy()[0]).max():.2g}"
)
rm = bn.running_mean.numpy()[:4]
print(
    f"running mean (first 4 channels) {np.round(rm, 2)} vs the data's "
    f"{np.round(p.mean(axis=(0, 2, 3))[:4], 2)}"
)

# %% [markdown]
# ## Exercise
# With PyTorch's convention (alpha divided by size), one nonzero channel of value a = 10 among
# zeros, size = 5, alpha = 1e-4, beta = 0.75, k = 1: predict local response norm's output at
# that channel, a / (k + alpha / size * a^2)^beta, set `my_output` (4 decimals), and check.

# %%
my_output = None  # exercise: a number


report("exercise", check_lrn_output(my_output))
