# %% [markdown]
"""Lesson 9: one Inception module, taken apart.

What it teaches: an Inception module runs four branches side by side on the same input (a 1x1
convolution; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1) and stacks their outputs along
the channel axis. We follow the shapes through each branch, count the parameters by hand and by
the library, and watch backward through the concatenation: each branch gets its own slice of the
gradient, and the input, read by all four branches, receives the sum of four gradients.

Run it: ``python examples/09_inception_module.py``. Pictures: ``examples/output/09_*.png`` and the
autograd graph as ``09_inception_graph.svg`` (with Graphviz; otherwise drawn with matplotlib as
``09_inception_graph.png``).
"""

# %% [markdown]
# ## Set-up

# %%

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_inception_4e_shape, report
from _lesson import parse_args, render_graph, save
from matplotlib.patches import FancyBboxPatch

import minidl as md
from googlenet import INCEPTION_CHANNELS, ConvBlock, Inception
from minidl.summary import profile

args = parse_args(__doc__.splitlines()[0])
out = args.output
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. Build inception 3a of the paper
# Table 1 gives it 192 input channels and #1x1 = 64, #3x3 reduce = 96, #3x3 = 128,
# #5x5 reduce = 16, #5x5 = 32, pool proj = 32. Every convolution is followed by a ReLU
# (`ConvBlock`). The paper uses a true 5x5 kernel (`kernel5=5`).

# %%
cin, c1, r3, c3, r5, c5, pp = INCEPTION_CHANNELS["3a"]
module = Inception(cin, c1, r3, c3, r5, c5, pp, kernel5=5)
print(module)

# %% [markdown]
# ## 2. Shapes, branch by branch
# One 28x28 image with 192 channels (the size 3a sees in the paper's network). Every branch keeps
# 28x28: the 3x3 convolution pads by 1, the 5x5 by 2, the max pool has stride 1 and padding 1.
# Only the channel counts differ, and the concatenation stacks them: 64 + 128 + 32 + 32 = 256.

# %%
rng = np.random.default_rng(6)
x = md.tensor(rng.standard_normal((1, cin, 28, 28)).astype(np.float32), requires_grad=True)
stats = profile(module, x)


def branch_steps(b):
    """The layers of branch b as the counter saw them: its ConvBlocks and pools, in order."""
    name = f"branch{b}"
    steps = [n for n in stats if n.startswith(name + ".") and n.count(".") == 1]
    steps = [n for n in steps if not n.endswith((".conv", ".relu"))]  # inside a ConvBlock
    return steps or [name]


print(f"input: {x.shape}")
for b in range(1, 5):
    for step in branch_steps(b):
        s = stats[step]
        print(f"  {step:<10} {type(s.module).__name__:<10} {s.input_shape} -> {s.output_shape}")
y = module(x)
branch_channels = [stats[f"branch{b}"].output_shape[1] for b in range(1, 5)]
print(
    f"concat on axis 1: {' + '.join(map(str, branch_channels))} = {sum(branch_channels)} channels"
)
print(f"output: {y.shape}")

# %% [markdown]
# ## 3. Parameters, by hand and by the library
# A k x k convolution from C_in to C_out channels has k*k*C_in*C_out weights and C_out biases.
# Max pooling and ReLU have none.

# %%
total = 0
print(f"{'layer':<12} {'kernel':>6} {'in':>4} {'out':>4}  {'k*k*in*out + out':>18}")
for name, sub in module.named_modules():
    if isinstance(sub, ConvBlock):
        conv = sub.conv
        k = conv.kernel_size[0]
        n = k * k * conv.in_channels * conv.out_channels + conv.out_channels
        total += n
        print(f"{name:<12} {k}x{k:<4} {conv.in_channels:>4} {conv.out_channels:>4}  {n:>18,}")
print(f"{'by hand':<30} {total:>18,}")
print(f"{'module.num_parameters()':<30} {module.num_parameters():>18,}")
tv = Inception(cin, c1, r3, c3, r5, c5, pp, kernel5=3, bn_eps=1e-3)
print(
    f"torchvision's version (3x3 in the '5x5' branch, batch norm, no conv bias): "
    f"{tv.num_parameters():,} parameters"
)

# %% [markdown]
# ## 4. The module as a picture
# The same structure as the paper's Figure 2(b), drawn from the module itself (layers and the
# shapes the counter recorded).


# %%
def describe(sub):
    if isinstance(sub, ConvBlock):
        k = sub.conv.kernel_size[0]
        return f"{k}x{k} conv, {sub.conv.out_channels}", {1: "#ffe680", 3: "#ffb366", 5: "#ff8080"}[
            k
        ]
    return "3x3 max pool, stride 1", "#99ccff"


fig, ax = plt.subplots(figsize=(12, 6.5))
ax.set_xlim(-0.2, 8.2)
ax.set_ylim(-0.6, 6.4)
ax.axis("off")


def box(cx, cy, text, color, w=1.8, h=0.75):
    ax.add_patch(
        FancyBboxPatch(
            (cx - w / 2, cy - h / 2), w, h, boxstyle="round,pad=0.04", fc=color, ec="black"
        )
    )
    ax.text(cx, cy, text, ha="center", va="center", fontsize=10)


def arrow(x0, y0, x1, y1):
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", lw=1.2))


box(4, 5.8, f"input\n{cin} x 28 x 28", "#dddddd", w=2.2)
box(
    4,
    0.0,
    f"concatenate on channels\n{' + '.join(map(str, branch_channels))} = "
    f"{sum(branch_channels)}  ->  {sum(branch_channels)} x 28 x 28",
    "#c6e5c6",
    w=4.6,
    h=0.85,
)
bus_top, bus_bottom = 5.0, 0.85  # the input fans out along one line, the branches meet on another
ax.plot([4, 4], [5.4, bus_top], color="black", lw=1.2)
ax.plot([1, 7], [bus_top, bus_top], color="black", lw=1.2)
ax.plot([1, 7], [bus_bottom, bus_bottom], color="black", lw=1.2)
arrow(4, bus_bottom, 4, 0.45)
for b, cx in zip(range(1, 5), (1, 3, 5, 7)):
    steps = branch_steps(b)
    ys = [4.2, 2.2] if len(steps) == 2 else [3.2]
    arrow(cx, bus_top, cx, ys[0] + 0.4)
    for i, (step, cy) in enumerate(zip(steps, ys)):
        label, color = describe(stats[step].module)
        s = stats[step]
        box(
            cx,
            cy,
            f"{label}\n-> {s.output_shape[1]} x {s.output_shape[2]} x {s.output_shape[3]}",
            color,
        )
        if i + 1 < len(ys):
            arrow(cx, cy - 0.4, cx, ys[i + 1] + 0.4)
    ax.plot([cx, cx], [ys[-1] - 0.4, bus_bottom], color="black", lw=1.2)
    ax.text(cx + 0.08, bus_top - 0.2, f"branch {b}", ha="left", fontsize=10, weight="bold")
ax.set_title(
    f"Inception 3a (Figure 2b): four branches on one input, {module.num_parameters():,} parameters",
    fontsize=13,
)
save(fig, out / "09_inception_module.png")

# %% [markdown]
# ## 5. Backward through the concatenation
# Concatenation's backward is slicing: channels 0-63 of the output gradient go to branch 1,
# 64-191 to branch 2, and so on. And because x feeds all four branches, x.grad is the *sum* of the
# four branches' input gradients (lesson 3's rule again: a value used several times collects
# every use's gradient). Check both by running each branch alone with its slice of the gradient.

# %%
rng = np.random.default_rng(12)
g = rng.standard_normal(y.shape).astype(np.float32)
y = module(x)  # a fresh graph: backward frees what the last one saved, so a re-run needs its own
module.zero_grad()
x.zero_grad()  # x.grad accumulates too
(y * md.tensor(g)).sum().backward()
full_x_grad = x.grad.numpy().copy()
full_param_grads = {n: p.grad.numpy().copy() for n, p in module.named_parameters()}

module.zero_grad()
edges = np.cumsum([0, *branch_channels])
x_grad_sum = np.zeros_like(full_x_grad)
for b in range(1, 5):
    xb = md.tensor(x.numpy(), requires_grad=True)
    yb = getattr(module, f"branch{b}")(xb)
    lo, hi = edges[b - 1], edges[b]
    (yb * md.tensor(g[:, lo:hi])).sum().backward()
    x_grad_sum += xb.grad.numpy()
    print(
        f"branch {b}: output channels {lo}-{hi - 1}, its share of x.grad has norm "
        f"{np.linalg.norm(xb.grad.numpy()):.3f}"
    )
same_params = all(
    np.allclose(p.grad.numpy(), full_param_grads[n], rtol=1e-4, atol=1e-6)
    for n, p in module.named_parameters()
)
print(f"norm of x.grad through the whole module: {np.linalg.norm(full_x_grad):.3f}")
print(
    f"sum of the four branches' x gradients equals it: "
    f"{np.allclose(x_grad_sum, full_x_grad, rtol=1e-4, atol=1e-5)}"
)
print(f"each branch's weights got the same gradient from its slice alone: {same_params}")

# %% [markdown]
# ## 6. The autograd graph
# Every op the forward pass ran, as recorded for backward: the input fans out to the four
# branches of the paper's Figure 2(b) (three 1x1 convolutions and a max pooling read it), which
# meet again in one Concat. (`model.fuse()`, which `python googlenet.py train` turns on, runs
# the three 1x1 convolutions of the input as one matrix product: the same values, one pass
# over x instead of three; this module is not fused, so the graph shows the branches.)
# Orange ellipses are Functions, boxes are tensors (blue: parameters and the input, the leaves
# that receive gradients). With Graphviz installed (`apt install
# graphviz`, `brew install graphviz` or `conda install graphviz`) the library draws it as SVG;
# without it the lesson draws the same graph with matplotlib (`09_inception_graph.png`).

# %%
for name, param in module.named_parameters():
    param.name = name  # label the parameter boxes with their state-dict keys
x.name = "x (input)"
y = module(x)
y.name = "output"
render_graph(y, out / "09_inception_graph.svg")

# %% [markdown]
# ## Exercise
# Inception 4e's branches have 256, 320, 128 and 128 output channels (Table 1). How many channels
# leave the module, and what is its output shape for one 14x14 input? Set `my_shape` to the
# (N, C, H, W) tuple and run the check, which builds the module from the paper's numbers.

# %%
my_shape = None  # exercise: (N, C, H, W)


report("exercise", check_inception_4e_shape(my_shape))
