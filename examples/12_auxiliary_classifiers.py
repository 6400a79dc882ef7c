# %% [markdown]
"""Lesson 12: auxiliary classifiers, and the gradient that reaches the early layers.

What it teaches: backward multiplies the gradient by every layer's local derivative on its way
down. In a deep plain network (no batch norm) with PyTorch's default initialisation each layer
multiplies it by about 1/sqrt(6) (lesson 11 derives it: the default's gain, not depth itself),
so the gradient that reaches the first layers is tiny: they barely learn. GoogLeNet (2014, before
He initialisation and batch norm) attached small classifiers to intermediate layers and added
their losses (weight 0.3): each one injects a fresh gradient half-way down. We measure the
gradient norm per layer of a 20-layer plain convolutional network with and without two such
heads, then the gradient per module of the CIFAR GoogLeNet, whose batch norm (lessons 11 and 13)
already keeps gradients alive.

Run it: ``python examples/12_auxiliary_classifiers.py [--quick]``.
Pictures: ``examples/output/12_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_aux_factor, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from googlenet import googlenet_cifar
from minidl import nn

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
nn.init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. A deep plain network with optional auxiliary heads
# 20 convolutions of 3x3 with 16 channels and ReLU, no normalisation, PyTorch's default
# initialisation; the main head averages the last feature map over space (lesson 10) and maps it
# to 10 classes. Two auxiliary heads of the same kind read the feature maps after layers 7 and
# 14, as GoogLeNet's read the outputs of inception 4a and 4d.

# %%
rng = np.random.default_rng(4)
nn.init.manual_seed(4)
DEPTH, WIDTH, AUX_AFTER = 20, 16, (7, 14)


class PlainNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(3 if i == 0 else WIDTH, WIDTH, 3, padding=1) for i in range(DEPTH)]
        )
        self.head = nn.Linear(WIDTH, 10)
        self.aux = nn.ModuleList([nn.Linear(WIDTH, 10) for _ in AUX_AFTER])

    def forward(self, x):
        """Returns (logits, [aux logits...], [every layer's output])."""
        aux_logits, outputs = [], []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))  # N x 16 x H x W
            outputs.append(x)
            if i + 1 in AUX_AFTER:
                head = self.aux[AUX_AFTER.index(i + 1)]
                aux_logits.append(head(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1)), aux_logits, outputs


net = PlainNet()
batch = 16 if args.quick else 32
images = md.tensor(rng.standard_normal((batch, 3, 16, 16)).astype(np.float32))
labels = md.tensor(rng.integers(0, 10, batch))
print(
    f"{DEPTH} conv layers, {net.num_parameters():,} parameters; a batch of {batch} random "
    "16x16 images with random labels (at initialisation the data hardly matters)"
)

# %% [markdown]
# ## 2. Measure the gradient at every layer
# Two losses on the same batch and the same weights:
#
#     main only:          L = CE(main head)
#     with aux heads:     L = CE(main head) + 0.3 * (CE(aux 1) + CE(aux 2))
#
# For each layer we record the norm of the gradient with respect to its weights (what the
# optimizer will use) and with respect to its output (the signal backward passes down;
# `retain_grad` keeps it).


# %%
def gradient_norms(use_aux):
    net.zero_grad()
    logits, aux_logits, outputs = net(images)
    for h in outputs:
        h.retain_grad()
    loss = F.cross_entropy(logits, labels)
    if use_aux:
        for a in aux_logits:
            loss = loss + 0.3 * F.cross_entropy(a, labels)
    loss.backward()
    dw = [np.linalg.norm(c.weight.grad.numpy()) for c in net.convs]
    dh = [np.linalg.norm(h.grad.numpy()) for h in outputs]
    return loss.item(), np.array(dw), np.array(dh)


results = {"main loss only": gradient_norms(False), "with 2 aux heads (x0.3)": gradient_norms(True)}
print(f"{'layer':>5} {'|dL/dW| main only':>20} {'with aux heads':>16} {'ratio':>10}")
(_, dw0, dh0), (_, dw1, dh1) = results.values()
for i in range(DEPTH):
    mark = "  <- aux head reads this layer" if i + 1 in AUX_AFTER else ""
    print(f"{i + 1:>5} {dw0[i]:>20.2e} {dw1[i]:>16.2e} {dw1[i] / dw0[i]:>10.0f}x{mark}")
print(
    f"without aux heads the first layer's gradient is {dw0[-1] / dw0[0]:.0e} times smaller "
    "than the last layer's;"
)
print(f"with them it is {dw1[-1] / dw1[0]:.0e} times smaller.")
per_layer = (dh0[-1] / dh0[0]) ** (1 / (DEPTH - 1))  # geometric mean of the per-layer factors
print(
    f"on its way down, the gradient shrinks by a factor of about {per_layer:.1f} per layer "
    "(lesson 11: sqrt(6) = 2.45 for this initialisation; He's would keep it at 1)."
)

# %% [markdown]
# ## 3. The picture
# Gradient norms per layer on a log scale. Below each aux head's attachment point the red curve
# jumps up: that is the aux loss's own gradient, fresh, not yet shrunk by the layers above it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharex=True)
layers = np.arange(1, DEPTH + 1)
colors = {"main loss only": "#1f77b4", "with 2 aux heads (x0.3)": "#d62728"}
for name, (_, dw, dh) in results.items():
    axes[0].semilogy(layers, dw, "o-", ms=4, color=colors[name], label=name)
    axes[1].semilogy(layers, dh, "o-", ms=4, color=colors[name], label=name)
for ax, what in zip(axes, ("weights  |dL/dW|", "output  |dL/dh|")):
    for k, a in enumerate(AUX_AFTER):
        ax.axvline(a, color="gray", ls="--", lw=1)
        ax.text(a + 0.2, 0.03, f"aux {k + 1}", color="gray", transform=ax.get_xaxis_transform())
    ax.set(xlabel="layer (1 = first, next to the input)", ylabel=f"gradient norm w.r.t. {what}")
    ax.set_xticks(layers[::2] if DEPTH > 12 else layers)
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # headroom for the legend
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
axes[0].set_title("Gradient reaching each layer's weights")
axes[1].set_title("Gradient passed down through each layer's output")
fig.suptitle(
    f"A {DEPTH}-layer plain conv net (no batch norm): auxiliary heads feed the early layers"
)
fig.tight_layout()
save(fig, out / "12_aux_plain_net.png")

# %% [markdown]
# ## 4. The same measurement on GoogLeNet for CIFAR-10
# The CIFAR model has batch norm after every convolution (torchvision's blocks). Lesson 11 showed
# what that does at initialisation: the forward scale is reset at every layer and the gradient
# no longer shrinks on its way down; it even grows a little, by 1/(1 - 1/pi) in mean square
# (about 1.2 in RMS) per conv + BN + ReLU layer, because batch norm divides by the variance of
# a convolution whose output has a per-channel mean. So the aux heads add only a little. That is
# why later Inception versions kept them mainly as regularisers, and why torchvision builds them
# only when asked (`aux_logits=True`).
#
# What we measure: the root mean square, per element, of the gradient reaching each module's
# output (as lesson 11 did per layer). Per element, because the modules differ in size: the
# summed norm of a module's parameter gradients would also grow with its parameter count and
# with the number of positions its weights are applied at (32x32 for 3a and 3b, 8x8 for 5a and
# 5b), which says nothing about vanishing. The two dips, at 3b and 4e, are the max pools after
# them: each routes a window's gradient to its arg-max alone (lesson 5), so only about one
# element in four of 3b's and 4e's outputs receives any.

# %%
rng = np.random.default_rng(10)
nn.init.manual_seed(10)
model = googlenet_cifar(width=0.125, aux_logits=True)
model.train()
n = 8 if args.quick else 16
imgs = md.tensor(rng.standard_normal((n, 3, 32, 32)).astype(np.float32))
tgts = md.tensor(rng.integers(0, 10, n))
modules = ["conv1", "inception3a", "inception3b", "inception4a", "inception4b"]
modules += ["inception4c", "inception4d", "inception4e", "inception5a", "inception5b"]
kept = {}  # module name -> its latest output (gradient retained)


class KeepOutput(nn.Module):
    """Runs a module unchanged and keeps its output, with its gradient, in ``kept``."""

    def __init__(self, name, inner):
        super().__init__()
        self.name, self.inner = name, inner

    def forward(self, x):
        y = self.inner(x)
        y.retain_grad()
        kept[self.name] = y
        return y


for m in modules:
    setattr(model, m, KeepOutput(m, getattr(model, m)))


def module_grads(use_aux):
    model.zero_grad()
    np.random.seed(0)  # the same dropout masks in both runs: only the loss differs
    out_ = model(imgs)  # training mode with aux heads: (logits, aux2, aux1)
    loss = F.cross_entropy(out_.logits, tgts)
    if use_aux:
        loss = loss + 0.3 * (F.cross_entropy(out_.aux1, tgts) + F.cross_entropy(out_.aux2, tgts))
    loss.backward()
    return np.array([np.sqrt(np.mean(kept[m].grad.numpy() ** 2)) for m in modules])


g0, g1 = module_grads(False), module_grads(True)
print(f"\nGoogLeNet CIFAR, width 1/8, batch norm; batch of {n}")
print(f"{'module':<12} {'output':>14} {'RMS dL/d(output): main only':>28} {'with aux':>10}")
for m, a, b in zip(modules, g0, g1):
    shape = "x".join(map(str, kept[m].shape[1:]))
    print(f"{m:<12} {shape:>14} {a:>28.2e} {b:>10.2e}")
growth = (g0[0] / g0[-1]) ** (1 / (len(modules) - 1))
print(
    f"from 5b down to conv1 the gradient grows {g0[0] / g0[-1]:.1f}x, {growth:.2f}x per module "
    "(each module is one or two conv + BN + ReLU layers deep; lesson 11: about 1.2x per layer)."
)
print("With batch norm the gradient does not vanish on its way down.")
assert g0[0] > g0[-1] and 1.0 < growth < 1.6
fig, ax = plt.subplots(figsize=(11, 4.8))
pos = np.arange(len(modules))
ax.semilogy(pos, g0, "o-", color="#1f77b4", label="main loss only")
ax.semilogy(pos, g1, "o-", color="#d62728", label="with 2 aux heads (x0.3)")
for k, m in enumerate(("inception4a", "inception4d")):
    ax.axvline(modules.index(m), color="gray", ls="--", lw=1)
    ax.text(
        modules.index(m) + 0.05,
        0.05,
        f"aux {k + 1} reads {m[-2:]}",
        color="gray",
        transform=ax.get_xaxis_transform(),
    )
ax.set_xticks(pos, [m.replace("inception", "") for m in modules])
ax.set(
    xlabel="module (input side on the left)",
    ylabel="RMS of dL/d(module output), per element",
    title="GoogLeNet for CIFAR-10 (batch norm): no vanishing gradient, aux heads add little",
    ylim=(g0.min() * 0.5, max(g0.max(), g1.max()) * 2),
)
ax.grid(alpha=0.3)
ax.legend()
save(fig, out / "12_aux_googlenet.png")

# %% [markdown]
# ## Exercise
# The auxiliary losses are weighted by 0.3. If the weight were 0.6, by what factor would the
# gradient reaching aux1's own convolution change? Predict `my_factor` (think: is the gradient
# linear in the loss weight?), then run the check, which backpropagates both weights.

# %%
my_factor = None  # exercise: a number


report("exercise", check_aux_factor(my_factor))
