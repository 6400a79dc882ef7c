# %% [markdown]
"""Lesson 10: global average pooling instead of a big fully connected head.

What it teaches: classic networks (AlexNet, VGG) flatten the last feature map and feed it to
fully connected layers, whose weight count is (channels x height x width) x classes. GoogLeNet
averages each channel over the whole map first (global average pooling, GAP), so the classifier
only sees one number per channel: far fewer parameters, and the network no longer cares about
the input's height and width. We count both heads, run one network on images of several sizes,
watch a flatten+FC head refuse them, and see GAP's backward spread the gradient evenly.

Run it: ``python examples/10_global_average_pooling.py [--quick]``.
Pictures: ``examples/output/10_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_head_parameters, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from googlenet import googlenet_cifar
from minidl import nn
from minidl.summary import profile

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. Two heads on the same feature map
# GoogLeNet's last inception module (5b) outputs 1024 channels of 7x7 on ImageNet. A flatten+FC
# head needs one weight per (channel, row, column, class); a GAP head one per (channel, class).
# The small CIFAR-10 model (width 1/4 with a 3x3 kernel in the "5x5" branch, as
# `python googlenet.py train` builds it; 8x8 maps, 10 classes) shows the same ratio: 64 = 8*8.


# %%
def head_params(channels, size, classes):
    fc = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, classes))
    gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))
    return fc.num_parameters(), gap.num_parameters()


cifar_model = googlenet_cifar(width=0.25, kernel5=3)  # the model `python googlenet.py train` trains
c_last = cifar_model.inception5b.out_channels
heads = {
    f"CIFAR model, width 1/4\n{c_last} x 8 x 8 -> 10": head_params(c_last, 8, 10),
}
if not args.quick:  # the ImageNet FC head alone holds 50 M weights (200 MB): build it only in full
    heads["paper's GoogLeNet\n1024 x 7 x 7 -> 1000"] = head_params(1024, 7, 1000)
else:
    fc_in = 1024 * 7 * 7
    heads["paper's GoogLeNet\n1024 x 7 x 7 -> 1000"] = (fc_in * 1000 + 1000, 1024 * 1000 + 1000)
for name, (fc, gap) in heads.items():
    print(f"{name.replace(chr(10), ': ')}")
    print(f"    flatten + FC: {fc:>12,} parameters")
    print(f"    GAP + FC:     {gap:>12,} parameters  ({fc / gap:.0f}x fewer)")
# The paper's layers without the aux heads, every bias counted: minidl's recount from Table 1's
# channel numbers (docs/googlenet-facts.md). Table 1's own parameter column sums to about 6.8 M:
# it is rounded, and in places off.
total_paper = 6_998_552
fc_paper, gap_paper = heads["paper's GoogLeNet\n1024 x 7 x 7 -> 1000"]
print(
    f"GoogLeNet as the paper builds it (no aux heads; recounted with every bias) has "
    f"{total_paper:,} parameters with the GAP head; a flatten+FC head would make it "
    f"{total_paper - gap_paper + fc_paper:,}"
)

# %% [markdown]
# ## 2. What GAP computes, and its backward
# GAP replaces each H x W channel by its mean. Its backward is the mean's backward: every
# position receives the same share, gradient / (H*W). No position is special, which is also why
# the head does not care how many positions there are.

# %%
rng = np.random.default_rng(6)
fmap = md.tensor(rng.integers(0, 10, (1, 2, 4, 4)).astype(np.float64), requires_grad=True)
pooled = F.adaptive_avg_pool2d(fmap, 1)
print("channel 0 of a 4x4 feature map:")
print(fmap.numpy()[0, 0])
print(f"GAP output for the 2 channels: {pooled.numpy().ravel()} (the means)")
(pooled * md.tensor(np.array([16.0, -8.0]).reshape(1, 2, 1, 1))).sum().backward()
print("backward of GAP with upstream gradient 16 for channel 0: every position gets 16/16 =")
print(fmap.grad.numpy()[0, 0])

# %% [markdown]
# ## 3. One network, many input sizes
# The CIFAR model was built for 32x32 images, but with a GAP head it runs on any size: the
# feature map grows with the image, the average does not. A flatten+FC head, built for 32x32
# inputs (256 x 8 x 8 = 16,384 features), fails on the first image of another size.

# %%
rng = np.random.default_rng(8)
cifar_model.eval()
fc_model = googlenet_cifar(width=0.25, kernel5=3)  # the same network, flatten + FC head
fc_model.avgpool = nn.Flatten()  # N x 256 x 8 x 8 -> N x 16384 (forward flattens again: no-op)
fc_model.fc = nn.Linear(c_last * 8 * 8, 10)
fc_model.eval()
print(
    f"GAP model: {cifar_model.num_parameters():,} parameters; "
    f"flatten+FC model: {fc_model.num_parameters():,}"
)
sizes = [32, 48, 64] if args.quick else [32, 48, 64, 96, 128]
macs = []
for s in sizes:
    img = md.tensor(rng.standard_normal((1, 3, s, s)).astype(np.float32))
    stats = profile(cifar_model, img)
    macs.append(stats[""].macs)
    print(
        f"input {s}x{s}: last feature map {stats['inception5b'].output_shape[1:]}, "
        f"{stats[''].macs / 1e6:.1f} M multiply-adds"
    )
    print(f"    GAP head:          logits of shape {stats[''].output_shape}")
    try:
        with md.no_grad():
            logits = fc_model(img)
        print(f"    flatten + FC head: logits of shape {logits.shape}")
    except ValueError as err:
        print(f"    flatten + FC head: ValueError: {str(err).split(';')[0]}")

# %% [markdown]
# ## 4. The pictures
# Left: head parameters on a log scale. Right: the same weights run on larger images; the cost
# grows with the number of pixels, the head stays the same size.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
pos = np.arange(len(heads))
fc_counts = [fc for fc, _ in heads.values()]
gap_counts = [gap for _, gap in heads.values()]
ax1.bar(pos - 0.2, fc_counts, 0.4, color="#d62728", label="flatten + fully connected")
ax1.bar(pos + 0.2, gap_counts, 0.4, color="#1f77b4", label="global average pool + FC")
for p, fc, gap in zip(pos, fc_counts, gap_counts):
    ax1.text(p - 0.2, fc, f"{fc:,}", ha="center", va="bottom", fontsize=9)
    ax1.text(p + 0.2, gap, f"{gap:,}", ha="center", va="bottom", fontsize=9)
ax1.set_yscale("log")
ax1.set_xticks(pos, list(heads))
ax1.set(
    ylabel="parameters in the head (log scale)",
    title="Classifier head size",
    ylim=(min(gap_counts) / 3, max(fc_counts) * 8),
)
ax1.legend(loc="upper left")

ax2.plot(sizes, np.array(macs) / 1e6, "o-", color="#2ca02c", label="multiply-adds per image")
for s, m in zip(sizes, macs):
    ax2.annotate(
        f"{m / 1e6:.0f} M", (s, m / 1e6), textcoords="offset points", xytext=(0, 8), ha="center"
    )
ax2.set(
    xlabel="input height = width (pixels)",
    ylabel="multiply-adds per image (millions)",
    title=f"Same weights ({cifar_model.num_parameters():,} params), any input size",
    ylim=(0, max(macs) / 1e6 * 1.2),
)
ax2.set_xticks(sizes)
ax2.grid(alpha=0.3)
ax2.legend(loc="upper left")
fig.suptitle("Global average pooling: a small head that works at any resolution")
fig.tight_layout()
save(fig, out / "10_gap_vs_fc.png")

# %% [markdown]
# ## Exercise
# A flatten + fully connected head on a 4x4x256 feature map for 10 classes, against global
# average pooling + the same classifier on 256 features: predict both parameter counts (weights
# and biases), set `my_fc` and `my_gap`, and run the check.

# %%
my_fc = None  # exercise: parameters of Linear(4*4*256, 10)
my_gap = None  # exercise: parameters of Linear(256, 10)


report("exercise", check_head_parameters(my_fc, my_gap))
