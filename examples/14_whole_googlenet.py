# %% [markdown]
"""Lesson 14: the whole GoogLeNet, assembled stage by stage.

What it teaches: the pieces of the previous lessons (the Inception module, 1x1 bottlenecks,
global average pooling, auxiliary heads, normalisation) make one 22-layer network. We run one
224x224 image through the paper's network (Szegedy et al., "Going Deeper with Convolutions",
2014, Table 1 and Figure 3) one stage at a time, printing each stage's output shape; look at
the stem and why its pools round up; print Table 1 computed from the live model beside the
paper's own figures; build the paper's auxiliary head exactly; and list what the CIFAR-10
variant and torchvision's model (``torchvision.models.googlenet``) change, and why.

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

import minidl as md
import minidl.functional as F
from googlenet import GoogLeNet, googlenet_cifar
from googlenet_table import summary, table1

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
print(f"{'stage':<13} {'layer':<20} {'output':>12}  {'paper':>12}")
print(f"{'input':<13} {'':<20} {hwc(x.shape):>12}")
with md.no_grad():
    for name in stages:
        if name == "dropout":
            x = x.flatten(1)  # N x 1024 x 1 x 1 -> N x 1024
        x = getattr(model, name)(x)
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
# channel counts, and parameters and multiply-adds counted from the layers, beside the paper's
# own figures (a star where they differ by more than 1%). The auxiliary heads are not rows: they
# exist only in training.

# %%
print(summary(model))
rows = table1(model)
params_main = model.num_parameters() - model.aux1.num_parameters() - model.aux2.num_parameters()
macs = sum(r["macs"] for r in rows)
assert params_main == 6_998_552 and macs == 1_582_671_872
inception_rows = [r for r in rows if r["type"].startswith("inception")]
assert [r["output"] for r in inception_rows][-1] == "7x7x1024"

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
    f"{tv.num_parameters():,} with them; paper variant: {params_main:,} / "
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
