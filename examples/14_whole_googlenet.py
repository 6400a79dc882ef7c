# %% [markdown]
"""Lesson 14: the whole GoogLeNet, assembled stage by stage.

What it teaches: the pieces of the previous lessons (the Inception module, 1x1 bottlenecks,
global average pooling, auxiliary heads, normalisation) make one 22-layer network. We run one
224x224 image through the paper's network (Szegedy et al., "Going Deeper with Convolutions",
2014, Table 1 and Figure 3) one stage at a time, printing each stage's output shape; look at
the stem and why its pools round up; draw the network as the paper's Figure 3 does, with its
two auxiliary heads; print Table 1 computed from the live model, add up its depth (22 layers),
and set the paper's own figures beside it, with what a recount says about where they differ;
build the paper's auxiliary head exactly; and list what the CIFAR-10 variant and torchvision's
model (``torchvision.models.googlenet``) change, and why.

Run it: ``python examples/14_whole_googlenet.py [--quick]``. Picture: ``examples/output/14_*.png``.
The same table from the command line: ``python googlenet.py summary --variant paper``.
"""

# %% [markdown]
# ## Set-up

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_aux_pool_size, check_half_width_parameters, report
from _lesson import parse_args, save
from matplotlib.patches import FancyBboxPatch, Patch

import minidl as md
import minidl.functional as F
from googlenet import GoogLeNet, googlenet_cifar
from googlenet_table import PAPER_TABLE1, paper_comparison, summary, table1

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
md.nn.init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. Stage by stage
# The paper's network (`variant="paper"`): convolutions with biases and ReLU, local response
# norm in the stem, true 5x5 kernels, no batch norm. In evaluation mode we call its stages one
# after another, exactly as `GoogLeNet.forward` does, and print each output as the paper writes
# it (height x width x channels). Table 1's "output size" column, row by row.

# %%
rng = np.random.default_rng(4)
model = GoogLeNet(num_classes=1000, variant="paper", aux_logits=True).eval()
stages = [
    "conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2",
    "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
    "inception5a", "inception5b", "avgpool", "dropout", "fc",
]  # fmt: skip
paper_output = {  # Table 1 of the paper, "output size"
    "conv1": "112x112x64", "maxpool1": "56x56x64", "conv3": "56x56x192",
    "maxpool2": "28x28x192", "inception3a": "28x28x256", "inception3b": "28x28x480",
    "maxpool3": "14x14x480", "inception4a": "14x14x512", "inception4b": "14x14x512",
    "inception4c": "14x14x512", "inception4d": "14x14x528", "inception4e": "14x14x832",
    "maxpool4": "7x7x832", "inception5a": "7x7x832", "inception5b": "7x7x1024",
    "avgpool": "1x1x1024", "dropout": "1x1x1024", "fc": "1x1x1000",
}  # fmt: skip


def hwc(shape):
    return f"{shape[2]}x{shape[3]}x{shape[1]}" if len(shape) == 4 else f"1x1x{shape[-1]}"


image = md.tensor(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
x = image
shapes = {"input": hwc(x.shape)}  # every stage's output size, for the drawing below
print(f"{'stage':<13} {'layer':<20} {'output':>12}  {'paper':>12}")
print(f"{'input':<13} {'':<20} {hwc(x.shape):>12}")
with md.no_grad():
    for name in stages:
        if name == "dropout":
            x = x.flatten(1)  # N x 1024 x 1 x 1 -> N x 1024
        x = getattr(model, name)(x)
        shapes[name] = hwc(x.shape)
        paper = paper_output.get(name, "")
        print(
            f"{name:<13} {type(getattr(model, name)).__name__:<20} {hwc(x.shape):>12}  {paper:>12}"
        )
        assert not paper or hwc(x.shape) == paper, (name, x.shape)
    logits = model(image)
# Equal up to float32 rounding, not always bit for bit: for one image the classifier is a
# matrix-vector product, and OpenBLAS sums it in a different order when minidl gives it fewer
# threads because other programs are busy (docs/training.md, "Threads").
assert np.allclose(x.numpy(), logits.numpy(), rtol=1e-5, atol=1e-6)
print("the stage-by-stage result equals model(image): these are all of the network's stages")

# %% [markdown]
# ### The same network, drawn as the paper's Figure 3
# Figure 3 of the paper draws every layer as a box, from the input at the bottom to the softmax
# at the top, with the two auxiliary classifiers branching off after 4a and 4d. Here it is on its
# side: the top row from left to right, then the bottom row. Over each box, the output size the
# run above printed; the colour says what kind of layer it is.

# %%
kinds = {  # colour and legend label per kind of layer
    "conv": ("#9fc5e8", "convolution (+ ReLU)"),
    "pool": ("#f4cccc", "pooling"),
    "lrn": ("#d9d2e9", "local response norm"),
    "inception": ("#b6d7a8", "Inception module (2 layers deep)"),
    "head": ("#ffe599", "classifier: dropout, fully connected, softmax"),
    "input": ("#eeeeee", "input image"),
}
main_path = [  # (stage, box label, kind): the top row, then the bottom row
    [("input", "input", "input"), ("conv1", "conv 7x7/2\n64", "conv"),
     ("maxpool1", "max pool\n3x3/2", "pool"), ("lrn1", "LRN", "lrn"),
     ("conv2", "conv 1x1\n64", "conv"), ("conv3", "conv 3x3\n192", "conv"),
     ("lrn2", "LRN", "lrn"), ("maxpool2", "max pool\n3x3/2", "pool"),
     ("inception3a", "inception\n3a", "inception"), ("inception3b", "inception\n3b", "inception"),
     ("maxpool3", "max pool\n3x3/2", "pool")],
    [("inception4a", "inception\n4a", "inception"), ("inception4b", "inception\n4b", "inception"),
     ("inception4c", "inception\n4c", "inception"), ("inception4d", "inception\n4d", "inception"),
     ("inception4e", "inception\n4e", "inception"), ("maxpool4", "max pool\n3x3/2", "pool"),
     ("inception5a", "inception\n5a", "inception"), ("inception5b", "inception\n5b", "inception"),
     ("avgpool", "avg pool\n7x7/1", "pool"), ("dropout", "dropout\n40%", "head"),
     ("fc", "FC\n1000", "head"), ("softmax", "softmax", "head")],
]  # fmt: skip
aux_head = [  # the paper's auxiliary classifier, section 4
    ("avg pool\n5x5/3", "pool"), ("conv 1x1\n128", "conv"), ("FC\n1024", "head"),
    ("dropout\n70%", "head"), ("FC\n1000", "head"), ("softmax", "head"),
]  # fmt: skip
step, w, h = 1.4, 1.15, 0.7  # box spacing, width and height
rows_y = (4.6, 2.3)


def draw_box(ax, x, y, label, kind, dashed=False):
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.1",
            fc=kinds[kind][0], ec="black", lw=1, ls="--" if dashed else "-",
        )
    )  # fmt: skip
    ax.text(x, y, label, ha="center", va="center", fontsize=8.5)


def draw_arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1, color="k"))


fig, ax = plt.subplots(figsize=(17, 9))
where = {}  # stage -> box centre
for row, y in zip(main_path, rows_y):
    for k, (name, label, kind) in enumerate(row):
        x = k * step
        where[name] = (x, y)
        draw_box(ax, x, y, label, kind)
        if name in shapes:
            ax.text(x, y + h / 2 + 0.1, shapes[name], ha="center", fontsize=7.5, color="#444")
        if k:
            draw_arrow(ax, (x - step + w / 2, y), (x - w / 2, y))
(x1, y1), (x2, y2) = where["maxpool3"], where["inception4a"]  # the top row goes on below
ax.plot([x1, x1, x2, x2], [y1 - h / 2, (y1 + y2) / 2, (y1 + y2) / 2, (y1 + y2) / 2], "k", lw=1)
draw_arrow(ax, (x2, (y1 + y2) / 2), (x2, y2 + h / 2 + 0.32))
for head, after in (("aux1", "inception4a"), ("aux2", "inception4d")):
    x, y = where[after]
    for k, (label, kind) in enumerate(aux_head):
        y_box = y - (k + 1) * 1.0
        draw_box(ax, x, y_box, label, kind, dashed=True)
        draw_arrow(ax, (x, y_box + 1.0 - h / 2), (x, y_box + h / 2))
    ax.text(
        x + w / 2 + 0.15, y - 1.0, f"{head}, after {after[-2:]}:\ntraining only,\nloss x 0.3",
        fontsize=8.5, va="center",
    )  # fmt: skip
ax.legend(
    handles=[Patch(fc=c, ec="black", label=text) for c, text in kinds.values()]
    + [Patch(fc="white", ec="black", ls="--", label="auxiliary head (dashed)")],
    loc="lower right", fontsize=9, frameon=False,
)  # fmt: skip
ax.set_xlim(-w, (len(main_path[1]) - 1) * step + w)
ax.set_ylim(y2 - len(aux_head) * 1.0 - 0.6, rows_y[0] + 0.8)
ax.set_aspect("equal")
ax.axis("off")
ax.set_title(
    "GoogLeNet as the paper's Figure 3 draws it, on its side\n22 layers with parameters "
    "(3 in the stem, 2 in each of 9 Inception modules, the classifier), 27 with the 5 pools",
    fontsize=13,
)
save(fig, out / "14_network.png")

# %% [markdown]
# ## 2. The stem
# ImageNet images are large, so the stem shrinks them 8x before the first Inception module:
# a 7x7 convolution with stride 2 (224 -> 112), a 3x3/2 max pool (-> 56), local response norm,
# a 1x1 convolution (64) and a 3x3 convolution (192), local response norm, another 3x3/2 max
# pool (-> 28). An output size is floor((n + 2 pad - k) / stride) + 1; the pools have no
# padding and *round up* (Caffe's rule, `ceil_mode=True` in PyTorch), or 112 would become 55:

# %%
conv_out = math.floor((224 + 2 * 3 - 7) / 2) + 1
pool_floor = math.floor((112 - 3) / 2) + 1
pool_ceil = math.ceil((112 - 3) / 2) + 1
print(f"7x7/2 pad 3 on 224: floor((224 + 6 - 7) / 2) + 1 = {conv_out}")
print(f"3x3/2 pool on 112: rounding down {pool_floor}, rounding up {pool_ceil} (the paper's 56)")
for n in (56, 28, 14):
    print(f"3x3/2 pool on {n}: rounding up {math.ceil((n - 3) / 2) + 1}")
assert (conv_out, pool_floor, pool_ceil) == (112, 55, 56)
assert model.maxpool1.ceil_mode and model.maxpool2.ceil_mode

# %% [markdown]
# ## 3. Table 1, from the live model
# `googlenet_table.summary` runs one forward pass through the library's counter and writes the
# paper's table from what it saw: patch size and stride, output size, depth, the Inception
# channel counts, and parameters and multiply-adds counted from the layers. The auxiliary heads
# are not rows: they exist only in training.
#
# Then the paper's own figures beside the count. Its multiply-adds agree on 10 of 12 rows, but
# its parameters are 2-10% off on most rows (conv1's by a factor of 3.5), more than rounding to
# three digits explains. A recount finds the reading that fits: weights without biases, in K of
# 1024 (then 7 of 12 rows agree within 1%, and the totals within 0.5%). conv1's figures are those
# of a depthwise-separable 7x7 convolution, and 5a's two figures describe a larger module than
# its channel counts; three rows stay unexplained. The notes under the comparison say which.

# %%
text = summary(model)
print(text)
rows = table1(model)
params_main = model.num_parameters() - model.aux1.num_parameters() - model.aux2.num_parameters()
macs = sum(r["macs"] for r in rows)
assert params_main == 6_998_552 and macs == 1_582_671_872
inception_rows = [r for r in rows if r["type"].startswith("inception")]
assert [r["output"] for r in inception_rows][-1] == "7x7x1024"
assert max(len(line) for line in text.splitlines()) <= 100  # fits a 100-column terminal
compared = paper_comparison(rows)
assert all(c["note"] != "?" for c in compared)  # every gap found has an explanation

# %% [markdown]
# Two totals: the depth the paper gives in its text ("22 layers deep when counting only layers
# with parameters (or 27 layers if we also count pooling)"), and its parameter column's sum
# beside minidl's count.

# %%
depth = sum(r["depth"] for r in rows)
pools = sum(r["type"].endswith("pool") for r in rows)  # the 4 max pools and the average pool
print(
    f"depth: {depth} layers with parameters (the depth column's sum), {depth + pools} counting "
    f"the {pools} pooling layers"
)
assert (depth, depth + pools) == (22, 27)
weights = sum(r["weights"] for r in rows)
paper_params = sum(PAPER_TABLE1[c["name"]][0] for c in compared)
print(
    f"parameters: minidl counts {params_main:,} ({weights:,} weights and "
    f"{params_main - weights:,} biases);\nthe paper's column adds up to {paper_params / 1e3:.1f}K;"
    f" the weights, in its K of 1024, are {weights / 1024:.1f}K "
    f"({paper_params / 1e3 / (weights / 1024) - 1:+.1%})"
)

# %% [markdown]
# Where the compute goes: multiply-adds per row of the table. The stem's two convolutions cost
# almost a third of the whole network: they work at 112x112 and 56x56.

# %%
labels = [r["name"].replace("inception", "") for r in rows if r["macs"]]
values = [r["macs"] / 1e6 for r in rows if r["macs"]]
fig, ax = plt.subplots(figsize=(12, 4.8))
bars = ax.bar(labels, values, color=["#ff7f0e"] * 2 + ["#1f77b4"] * (len(values) - 3) + ["gray"])
for bar, v in zip(bars, values):
    ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
ax.set_ylabel("multiply-adds per image (millions)")
ax.set_xlabel("row of Table 1 (orange: the stem, blue: Inception modules, gray: classifier)")
ax.set_title(
    f"GoogLeNet (paper, 224x224): {macs / 1e9:.2f} G multiply-adds, "
    f"{params_main / 1e6:.2f} M parameters, counted from the live model"
)
ax.grid(axis="y", alpha=0.3)
save(fig, out / "14_cost_per_stage.png")

# %% [markdown]
# ## 4. The auxiliary heads, exactly as in the paper
# Two small classifiers read the outputs of 4a (14x14x512) and 4d (14x14x528), in training only:
#
#     average pool 5x5, stride 3      14x14 -> 4x4
#     1x1 convolution, 128 filters, ReLU
#     fully connected 2048 -> 1024, ReLU
#     dropout 70%
#     fully connected 1024 -> 1000 (softmax in the loss)
#
# Their losses are added to the main loss with weight 0.3; at inference they are dropped.

# %%
rng = np.random.default_rng(12)
print(model.aux1)
h = md.tensor(rng.standard_normal((2, 512, 14, 14)).astype(np.float32))
with md.no_grad():
    steps = {"pool": model.aux1.pool(h)}
    steps["conv"] = model.aux1.conv(steps["pool"])
    steps["fc1"] = model.aux1.relu(model.aux1.fc1(steps["conv"].flatten(1)))
    steps["fc2"] = model.aux1.fc2(model.aux1.dropout(steps["fc1"]))
for name, t in steps.items():
    print(f"  aux1.{name:<5} -> {tuple(t.shape)}")
assert [tuple(t.shape) for t in steps.values()] == [
    (2, 512, 4, 4),
    (2, 128, 4, 4),
    (2, 1024),
    (2, 1000),
]
assert model.aux1.dropout.p == 0.7
aux_params = (model.aux1.num_parameters(), model.aux2.num_parameters())
print(
    f"parameters: aux1 {aux_params[0]:,}, aux2 {aux_params[1]:,} "
    f"(the main network: {params_main:,})"
)
assert aux_params == (3_188_840, 3_190_888)

# %% [markdown]
# In training mode the model returns three sets of logits; the loss weights the heads by 0.3.
# In evaluation mode it returns the main logits alone. (Training the full network on one image
# costs seconds; `--quick` skips this check.)

# %%
if args.quick:
    print("quick mode: skipping the training-mode forward of the full network")
else:
    model.train()
    target = md.tensor(np.array([3]))
    outputs = model(image)
    loss = F.cross_entropy(outputs.logits, target) + 0.3 * (
        F.cross_entropy(outputs.aux1, target) + F.cross_entropy(outputs.aux2, target)
    )
    print(
        f"training: {type(outputs).__name__}({', '.join(outputs._fields)}), loss {loss.item():.3f}"
    )
    model.eval()
    with md.no_grad():
        assert isinstance(model(image), md.Tensor)
    print("evaluation: one Tensor of logits; the heads are not run")

# %% [markdown]
# ## 5. The CIFAR-10 variant: what changes, and why
# 32x32 images are 7 times smaller than 224x224 in each direction. The ImageNet stem would shrink
# them to 4x4 before the first Inception module, so the CIFAR model (the layout of widely used
# CIFAR GoogLeNets, e.g. kuangliu/pytorch-cifar) changes:
#
# - stem: one 3x3 convolution (192 channels x width), no pooling, no LRN: 3a sees 32x32;
# - max pools 3x3/2 with padding 1 (32 -> 16 -> 8) instead of rounding up;
# - batch norm after every convolution (torchvision's blocks): trains from the default
#   initialisation (lesson 11) and replaces LRN (lesson 13);
# - global average pooling over 8x8, dropout 20%, 10 classes;
# - `width` multiplies every channel count: the command line trains width 1/4 with a 3x3 kernel in
#   the "5x5" branch (as torchvision), about 1/16 of the parameters (they grow with width^2).

# %%
cifar = googlenet_cifar(width=0.25, kernel5=3)  # what `python googlenet.py train` builds
print(summary(cifar, input_size=32))
assert cifar.num_parameters() == 348_770

# %% [markdown]
# ## 6. torchvision's GoogLeNet: its deviations from the paper
# `GoogLeNet(variant="torchvision")` has torchvision's structure, so its published ImageNet weights
# load unchanged (`python googlenet.py import-torchvision`). It deviates from the paper in:
#
# - conv (no bias) + batch norm (eps 0.001) + ReLU everywhere, and no LRN;
# - a **3x3** kernel in the "5x5" branch, kept so that the weights ported from TensorFlow load
#   (pytorch/vision issue #906);
# - the pool after 4e is 2x2/2 (14 -> 7 either way);
# - the aux heads pool adaptively to 4x4 (the same as 5x5/3 at 14x14), the main head's dropout
#   is 20%.

# %%
tv = GoogLeNet(variant="torchvision", aux_logits=True)
tv_main = tv.num_parameters() - tv.aux1.num_parameters() - tv.aux2.num_parameters()
print(
    f"torchvision variant: {tv_main:,} parameters without the aux heads, "
    f"{tv.num_parameters():,} with them;\npaper variant: {params_main:,} / "
    f"{model.num_parameters():,}"
)
print(
    f"'5x5' branch kernel {tv.inception3a.branch3[1].conv.kernel_size}, batch norm eps "
    f"{tv.conv1.bn.eps}, pool after 4e {tv.maxpool4.kernel_size}, head dropout {tv.dropout.p}"
)
assert (tv_main, tv.num_parameters()) == (6_624_904, 13_004_888)

# %% [markdown]
# ## Exercises
# 1. The CIFAR model at width 1/2 (still 3x3 in the "5x5" branch): predict its parameter count
#    from width 1/4's 348,770 (what grows like width^2, what does not?), set `my_params`, and run
#    the check.
# 2. In the CIFAR model, aux1 reads 4a's 16x16 map. What would the paper's 5x5/3 average pool
#    make of it? Set `my_size` (the output height) and check; then say why the model pools
#    adaptively to 4x4 instead.

# %%
my_params = None  # exercise 1: your prediction (within 5% counts)
my_size = None  # exercise 2: your answer


report("exercise 1", check_half_width_parameters(my_params))
report("exercise 2", check_aux_pool_size(my_size))
