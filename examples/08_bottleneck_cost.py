# %% [markdown]
"""Lesson 8: the 1x1 bottleneck, GoogLeNet's central trick, counted on real layers.

What it teaches: a convolution costs (output values) x (input channels x kernel height x kernel
width) multiply-adds. A 1x1 convolution that first squeezes the channels makes the expensive 5x5
convolution after it much cheaper. We build the layers with ``minidl.nn``, run them once, and let
the library's own counter (``minidl.summary.profile``) measure every layer, rather than typing the
arithmetic in. First the classic 11x11x300 example, then inception 3a of the paper without
reductions (Figure 2a) and with them (Figure 2b), then all nine inception modules.

Run it: ``python examples/08_bottleneck_cost.py [--quick]``. Pictures: ``examples/output/08_*.png``.
"""

# %% [markdown]
# ## Set-up
# `googlenet.py` (the model, installed with the library by `pip install -e .`) gives the Inception
# modules and the paper's channel plan.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_bottleneck, report
from _lesson import parse_args, save

import minidl as md
from googlenet import INCEPTION_CHANNELS, Inception, NaiveInception
from minidl import nn
from minidl.summary import format_table, profile

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.


def show(stats, title):
    """Print the layers the counter saw: shapes in, shapes out, parameters, multiply-adds."""
    rows = [
        (
            name or "(whole)",
            type(s.module).__name__,
            "x".join(map(str, s.input_shape[1:])),
            "x".join(map(str, s.output_shape[1:])),
            f"{s.params:,}",
            f"{s.macs:,}",
        )
        for name, s in stats.items()
    ]
    print(title)
    headers = ("layer", "type", "input CxHxW", "output CxHxW", "params", "multiply-adds")
    print(format_table(headers, rows, align="llllrr"))


# %% [markdown]
# ## 1. The classic example: 30 filters of 5x5 on an 11x11x300 input
# Same padding (2) keeps the 11x11 size. Each of the 11*11*30 output values is a dot product over
# a 5x5x300 patch, so the cost is 11*11*30 * 5*5*300 multiply-adds. Build the layer, run one
# image through it, and let the counter add it up.

# %%
rng = np.random.default_rng(4)
x = md.tensor(rng.standard_normal((1, 300, 11, 11)).astype(np.float32))
direct = nn.Conv2d(300, 30, 5, padding=2, bias=False)
stats_direct = profile(direct, x)
show(stats_direct, "A: one 5x5 convolution, 300 -> 30 channels")
cost_direct = stats_direct[""].macs
print(
    f"counted: {cost_direct:,} multiply-adds;  by formula 11*11*30*5*5*300 = "
    f"{11 * 11 * 30 * 5 * 5 * 300:,}"
)

# %% [markdown]
# ## 2. The same output through a 1x1 bottleneck
# First a 1x1 convolution reduces 300 channels to 5 (every output value: a dot product over 300
# channels), then the 5x5 convolution works on 5 channels instead of 300:
#
#     1x1: 11*11*5  * 1*1*300 = 181,500
#     5x5: 11*11*30 * 5*5*5   = 453,750
#
# The counter below measures the real layers.

# %%
bottleneck = nn.Sequential(
    nn.Conv2d(300, 5, 1, bias=False),  # 1 x 300 x 11 x 11 -> 1 x 5 x 11 x 11
    nn.Conv2d(5, 30, 5, padding=2, bias=False),  # -> 1 x 30 x 11 x 11
)
stats_bn = profile(bottleneck, x)
show(stats_bn, "B: 1x1 reduction to 5 channels, then the 5x5 convolution")
reduce_cost, conv_cost = stats_bn["0"].macs, stats_bn["1"].macs
cost_bn = stats_bn[""].macs
print(f"counted: {reduce_cost:,} + {conv_cost:,} = {cost_bn:,} multiply-adds")
print(
    f"saving: {cost_direct:,} / {cost_bn:,} = {cost_direct / cost_bn:.1f} times fewer "
    f"multiply-adds, and {stats_direct[''].params:,} -> {stats_bn[''].params:,} weights"
)
print(
    f"both give an output of shape {stats_direct[''].output_shape} (the same shape, not the "
    "same function: the bottleneck can express less)"
)
assert (cost_direct, reduce_cost, conv_cost, cost_bn) == (27_225_000, 181_500, 453_750, 635_250)

# %% [markdown]
# ## 3. Does the count show up on the clock?
# Time both on a batch of images with the library's forward pass. Small layers carry fixed
# overheads, so the measured ratio is smaller than the multiply-add ratio, but it is still large.

# %%
rng = np.random.default_rng(8)
batch = md.tensor(rng.standard_normal((16 if args.quick else 64, 300, 11, 11)).astype(np.float32))


def best_time(model, reps=3):
    best = float("inf")
    with md.no_grad():
        for _ in range(reps):
            t0 = time.perf_counter()
            model(batch)
            best = min(best, time.perf_counter() - t0)
    return best


t_direct, t_bn = best_time(direct), best_time(bottleneck)
print(
    f"forward on {batch.shape[0]} images: direct 5x5 {1000 * t_direct:.1f} ms, "
    f"with bottleneck {1000 * t_bn:.1f} ms ({t_direct / t_bn:.1f}x faster)"
)

# %% [markdown]
# ## 4. Inception 3a: Figure 2(a) vs Figure 2(b)
# The paper's first inception module sees 28x28x192. Naively (Figure 2a) it runs 1x1 (64), 3x3
# (128) and 5x5 (32) convolutions and a 3x3 max pool side by side on all 192 channels, and the
# pool passes all 192 channels on. With reductions (Figure 2b), 1x1 convolutions bring the 3x3
# branch's input down to 96 channels and the 5x5 branch's to 16, and a 1x1 projection after the
# pool keeps 32 channels. Same 1x1/3x3/5x5 outputs; the counter shows what each branch costs.

# %%
rng = np.random.default_rng(10)
cin, c1, r3, c3, r5, c5, pp = INCEPTION_CHANNELS["3a"]
x3a = md.tensor(rng.standard_normal((1, cin, 28, 28)).astype(np.float32))
naive = NaiveInception(cin, c1, c3, c5)
reduced = Inception(cin, c1, r3, c3, r5, c5, pp, kernel5=5)  # the paper's true 5x5
st_naive, st_red = profile(naive, x3a), profile(reduced, x3a)
show({k: v for k, v in st_naive.items() if "." not in k}, "\nInception 3a, naive (Figure 2a)")
layers = {k: v for k, v in st_red.items() if "." not in k or k.split(".")[-1].isdigit()}
show(layers, "\nInception 3a, reductions (2b)")
branch_names = ["1x1", "3x3", "5x5", "pool"]
naive_macs = [st_naive[f"branch{i}"].macs for i in range(1, 5)]
red_macs = [st_red[f"branch{i}"].macs for i in range(1, 5)]
print(f"\n{'branch':<8}{'naive (2a)':>16}{'with reductions (2b)':>24}")
for name, a, b in zip(branch_names, naive_macs, red_macs):
    print(f"{name:<8}{a:>16,}{b:>24,}")
print(
    f"{'total':<8}{st_naive[''].macs:>16,}{st_red[''].macs:>24,}   "
    f"({st_naive[''].macs / st_red[''].macs:.1f}x fewer)"
)
print(
    f"output channels: naive {naive.out_channels} (64+128+32 + all 192 pooled), "
    f"with reductions {reduced.out_channels} (64+128+32+32)"
)
print(f"parameters: naive {st_naive[''].params:,}, with reductions {st_red[''].params:,}")
print(
    f"the paper's Table 1 gives inception (3a) 128M ops: the counter says "
    f"{st_red[''].macs / 1e6:.1f} M"
)

# %% [markdown]
# The two pictures side by side: the classic example and inception 3a's branches.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.3]})
ax1.bar(["5x5 conv\n300 -> 30"], [cost_direct / 1e6], color="#d62728", label="5x5 convolution")
ax1.bar(
    ["1x1 (300 -> 5),\nthen 5x5 (5 -> 30)"],
    [reduce_cost / 1e6],
    color="#17becf",
    label="1x1 reduction",
)
ax1.bar(
    ["1x1 (300 -> 5),\nthen 5x5 (5 -> 30)"],
    [conv_cost / 1e6],
    bottom=[reduce_cost / 1e6],
    color="#ff7f0e",
    label="5x5 on 5 channels",
)
ax1.text(0, cost_direct / 1e6, f"{cost_direct:,}", ha="center", va="bottom")
ax1.text(
    1, cost_bn / 1e6, f"{reduce_cost:,} + {conv_cost:,}\n= {cost_bn:,}", ha="center", va="bottom"
)
ax1.set(
    ylabel="multiply-adds per image (millions)",
    ylim=(0, cost_direct / 1e6 * 1.15),
    title="11x11x300 input, 30 filters of 5x5",
)
ax1.legend(loc="upper right")

colors = ["#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"]
bottom = np.zeros(2)
for name, a, b, color in zip(branch_names, naive_macs, red_macs, colors):
    vals = np.array([a, b]) / 1e6
    ax2.bar(
        ["naive (Figure 2a)", "with 1x1 reductions (2b)"],
        vals,
        bottom=bottom,
        color=color,
        label=f"{name} branch",
    )
    bottom += vals
for i, total in enumerate(bottom):
    ax2.text(i, total, f"{total:.1f} M", ha="center", va="bottom")
ax2.set(
    ylabel="multiply-adds per image (millions)",
    ylim=(0, bottom.max() * 1.12),
    title="Inception 3a on 28x28x192 (counted by minidl.summary)",
)
ax2.legend()
fig.suptitle("The 1x1 bottleneck: reduce channels before the expensive convolution")
fig.tight_layout()
save(fig, out / "08_bottleneck.png")

# %% [markdown]
# ## 5. All nine inception modules
# Module by module, at the input size each one sees in the paper's network (each naive module gets
# the real module's input, so the naive costs do not snowball). The totals are the heart of the
# paper's claim: the reductions make a 22-layer network affordable. (Skipped in quick mode.)

# %%
rng = np.random.default_rng(14)
sizes = {"3a": 28, "3b": 28, "4a": 14, "4b": 14, "4c": 14, "4d": 14, "4e": 14, "5a": 7, "5b": 7}
if args.quick:
    print("quick mode: skipping the nine-module comparison")
else:
    rows, naive_all, red_all = [], [], []
    for name, (cin, c1, r3, c3, r5, c5, pp) in INCEPTION_CHANNELS.items():
        xi = md.tensor(rng.standard_normal((1, cin, sizes[name], sizes[name])).astype(np.float32))
        a = profile(NaiveInception(cin, c1, c3, c5), xi)[""].macs
        b = profile(Inception(cin, c1, r3, c3, r5, c5, pp, kernel5=5), xi)[""].macs
        naive_all.append(a)
        red_all.append(b)
        rows.append(
            (name, f"{sizes[name]}x{sizes[name]}x{cin}", f"{a:,}", f"{b:,}", f"{a / b:.1f}x")
        )
    rows.append(
        (
            "total",
            "",
            f"{sum(naive_all):,}",
            f"{sum(red_all):,}",
            f"{sum(naive_all) / sum(red_all):.1f}x",
        )
    )
    print(
        format_table(
            ("module", "input", "naive (2a)", "with reductions (2b)", "saving"), rows, align="llrrr"
        )
    )

    fig, ax = plt.subplots(figsize=(10, 4.8))
    pos = np.arange(len(sizes))
    ax.bar(pos - 0.2, np.array(naive_all) / 1e6, 0.4, color="#d62728", label="naive (Figure 2a)")
    ax.bar(
        pos + 0.2,
        np.array(red_all) / 1e6,
        0.4,
        color="#1f77b4",
        label="with 1x1 reductions (Figure 2b)",
    )
    ax.set_xticks(pos, [f"{k}\n{s}x{s}" for k, s in sizes.items()])
    ax.set(
        xlabel="inception module and its spatial size",
        ylabel="multiply-adds per image (M)",
        title=f"Every inception module of GoogLeNet: {sum(naive_all) / 1e9:.2f} G naive vs "
        f"{sum(red_all) / 1e9:.2f} G with reductions",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    save(fig, out / "08_all_modules.png")

# %% [markdown]
# ## Exercise
# Inception 4a's "5x5" branch reads 480 channels at 14x14, reduces them to 16 with 1x1
# convolutions, then applies 48 5x5 filters (padding 2). Predict the multiply-adds of that branch
# without the reduction (`my_without`: 48 5x5 filters straight on the 480 channels) and with it
# (`my_with`: the 1x1 plus the 5x5), and run the check.

# %%
my_without = None  # exercise: an integer
my_with = None  # exercise: an integer


report("exercise", check_bottleneck(my_without, my_with))
