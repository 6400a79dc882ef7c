# %% [markdown]
"""Lesson 11: initialisation, or why a deep plain network's gradient vanishes, and how to stop it.

What it teaches: a layer multiplies the scale of what passes through it, forward and backward,
by a factor set by its weights' variance. With PyTorch's default initialisation (kept by minidl)
a ReLU layer multiplies the mean square by 1/6, so twenty layers shrink it by 6^20 and the
first layers get almost no gradient (lesson 12's plain network). It is the default's *gain*,
not depth itself: He initialisation (variance 2 / fan_in) keeps the factor at 1 and the same
20 layers pass the gradient unchanged; Xavier's (1 / fan_in here) halves it per layer. We
derive each factor, measure it through 20 layers forward and backward, see why the default's
activations stop shrinking at a floor (the biases) while its gradient does not, and what batch
norm changes.

Run it: ``python examples/11_initialisation.py [--quick]``. Picture: ``examples/output/11_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_he_std, check_leaky_factor, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from minidl import nn
from minidl.nn import init

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. One layer's factor
# A convolution output is a sum of fan_in = C_in * k * k products w * x. With independent,
# zero-mean weights its mean square is
#
#     E[y^2] = fan_in * Var(w) * E[x^2]
#
# and ReLU keeps the positive half of a symmetric y: E[relu(y)^2] = E[y^2] / 2. So each
# conv + ReLU layer multiplies the mean square by fan_in * Var(w) / 2. Backward is the mirror
# image: the gradient goes through the same weights (fan_out terms) and the same ReLU mask
# (half of it zero), so its mean square is multiplied by fan_out * Var(w) / 2. With 16 channels
# and 3x3 kernels, fan_in = fan_out = 144. Three initialisations:
#
#     PyTorch's default   U(-1/sqrt(fan_in), 1/sqrt(fan_in))   Var = 1/(3 fan_in)   factor 1/6
#     Xavier (Glorot)     Var = 2/(fan_in + fan_out) = 1/fan_in                      factor 1/2
#     He (Kaiming)        Var = 2/fan_in                                             factor 1
#
# In `init`'s words: weights are gain / sqrt(fan_in) in standard deviation. He uses ReLU's gain,
# sqrt(2); the default is `kaiming_uniform_(a=sqrt(5))`, a leaky-ReLU gain of
# sqrt(2 / (1 + 5)) = sqrt(1/3): sqrt(6) = 2.45 times too small for ReLU.

# %%
init.manual_seed(4)
C, K = 16, 3
fan = C * K * K
inits = {
    "PyTorch default": (lambda w: init.kaiming_uniform_(w, a=math.sqrt(5)), 1 / (3 * fan)),
    "Xavier": (lambda w: init.xavier_normal_(w), 2 / (fan + fan)),
    "He": (lambda w: init.kaiming_normal_(w, nonlinearity="relu"), 2 / fan),
}
print(f"conv 3x3, {C} -> {C} channels: fan_in = fan_out = {fan}")
print(f"{'init':<16} {'Var(w) wanted':>14} {'Var(w) drawn':>13} {'factor/layer (mean square)':>27}")
predicted = {}
for name, (fill, var) in inits.items():
    w = md.tensor(np.zeros((C, C, K, K), np.float64))
    fill(w)
    predicted[name] = fan * var / 2
    print(f"{name:<16} {var:>14.5f} {w.numpy().var():>13.5f} {predicted[name]:>27.3f}")
    assert abs(w.numpy().var() / var - 1) < 0.15
print(
    f"gains: default {init.calculate_gain('leaky_relu', math.sqrt(5)):.3f}, "
    f"relu {init.calculate_gain('relu'):.3f} (ratio {math.sqrt(6):.2f})"
)

# %% [markdown]
# ## 2. Twenty layers, forward and backward
# The plain network of lesson 12: 20 convolutions 3x3 with 16 channels and ReLU, no
# normalisation. For each initialisation: run a batch forward, record the root mean square of
# every layer's output, then send a random gradient in at the top and record the root mean
# square of the gradient reaching every layer's output. He and Xavier start biases at zero (the
# usual practice); the default draws them like its weights. A fourth network keeps the default
# initialisation and adds batch norm before every ReLU.

# %%
rng = np.random.default_rng(0)
init.manual_seed(0)
DEPTH = 20
batch = 8 if args.quick else 32
images = md.tensor(rng.standard_normal((batch, 3, 16, 16)))


def build(name):
    convs = [nn.Conv2d(3 if i == 0 else C, C, K, padding=1) for i in range(DEPTH)]
    if name in inits and name != "PyTorch default":
        for conv in convs:
            inits[name][0](conv.weight)
            init.zeros_(conv.bias)
    norms = [nn.BatchNorm2d(C) for _ in convs] if name.endswith("batch norm") else None
    return convs, norms


def scales(name):
    convs, norms = build(name)
    for m in convs + (norms or []):
        m.double()
    h, outputs = images, []
    for i, conv in enumerate(convs):
        h = conv(h)
        if norms is not None:
            h = norms[i](h)
        h = F.relu(h)
        h.retain_grad()
        outputs.append(h)
    h.backward(rng.standard_normal(h.shape))
    rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
    return np.array([rms(o.numpy()) for o in outputs]), np.array(
        [rms(o.grad.numpy()) for o in outputs]
    )


configs = [*inits, "default + batch norm"]
results = {name: scales(name) for name in configs}
print(f"{'':>22}{'activation RMS':>28}{'gradient RMS':>28}")
print(f"{'init':<22}{'layer 1':>14}{'layer 20':>14}{'layer 1':>14}{'layer 20':>14}")
for name, (act, grad) in results.items():
    print(f"{name:<22}{act[0]:>14.3g}{act[-1]:>14.3g}{grad[0]:>14.3g}{grad[-1]:>14.3g}")

# %% [markdown]
# ## 3. Measured against predicted
# The per-layer factor of the mean square, as a geometric mean over the layers: the gradient's
# from layer 20 down to layer 2, the activations' over layers 2 to 6. They match the
# derivation, except the default's activations, which hit a floor after a few layers (next
# section).

# %%
print(f"{'init':<16}{'predicted':>11}{'activations':>13}{'gradient':>10}")
for name in inits:
    act, grad = results[name]
    f_act = (act[5] / act[1]) ** (2 / 4)
    f_grad = (grad[1] / grad[-1]) ** (2 / (DEPTH - 2))
    floor = "  (activations: the floor)" if name == "PyTorch default" else ""
    print(f"{name:<16}{predicted[name]:>11.3f}{f_act:>13.3f}{f_grad:>10.3f}{floor}")
    assert floor or abs(f_act / predicted[name] - 1) < 0.25, (name, f_act)
    assert abs(f_grad / predicted[name] - 1) < 0.25, (name, f_grad)
default_grad = results["PyTorch default"][1]
he_grad = results["He"][1]
print(
    f"layer 1 gets {default_grad[0] / default_grad[-1]:.1e} of layer 20's gradient with the "
    f"default, {he_grad[0] / he_grad[-1]:.2f} with He: the depth is the same, the gain is not"
)
assert default_grad[0] / default_grad[-1] < 1e-5 and 0.2 < he_grad[0] / he_grad[-1] < 5

# %% [markdown]
# ## 4. The default's floor: biases
# The default's activations shrink by sqrt(1/6) per layer only for a few layers, then stay put.
# Its biases, drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), add Var(b) = 1/(3 fan_in) to every
# pre-activation whatever the input. The mean square settles roughly where shrinking and adding
# balance (rough: each layer has only 16 biases, so their actual spread varies):
#
#     v = (v / 3 + Var(b)) / 2      (with fan_in Var(w) = 1/3)   =>   v = 3 Var(b) / 5
#
# The gradient has no such floor: a bias adds to the forward value but contributes nothing to
# the gradient flowing down, so the gradient keeps shrinking all the way (lesson 13 meets the
# same floor in its table of activation scales).

# %%
v_floor = 3 * (1 / (3 * fan)) / 5
act_default = results["PyTorch default"][0]
print(
    f"floor RMS, estimated {math.sqrt(v_floor):.3f}, measured over layers 11-20 "
    f"{act_default[10:].mean():.3f}; from layer 10 to 20 the activations change by "
    f"{act_default[-1] / act_default[9]:.2f}x, the gradient by "
    f"{default_grad[9] / default_grad[-1]:.0e}x"
)
assert 0.3 < act_default[-1] / act_default[9] < 3 and default_grad[9] / default_grad[-1] < 1e-3
assert 0.3 < act_default[10:].mean() / math.sqrt(v_floor) < 3

# %% [markdown]
# ## 5. What batch norm changes
# Batch norm rescales every layer's pre-activations to mean 0 and variance 1 per channel,
# whatever the weights' scale: every layer's output is relu of a standard normal, RMS
# sqrt(1/2) = 0.707, whatever the initialisation. In backward it divides the gradient by the
# same standard deviation s it divided the values by, undoing what small weights take away.
#
# Not quite exactly: the gradient even *grows* towards the input, by the same factor per layer
# for any initialisation. ReLU outputs are positive, with mean E[h] = 1/sqrt(2 pi) and mean
# square E[h^2] = 1/2, and an output channel's weights do not sum to zero, so the convolution's
# output has a per-channel mean that batch norm subtracts. The conv's backward scales the mean
# square by fan * Var(w), as before, but batch norm divides by the *variance*
# fan * Var(w) * (E[h^2] - E[h]^2), which is smaller. Per layer, with the ReLU's 1/2:
#
#     factor = fan Var(w) * 1/2 / (fan Var(w) (1/2 - 1/(2 pi))) = 1 / (1 - 1/pi) = 1.47
#
# (mean square), so about 1.21 per layer in RMS: a batch-norm network's early layers get
# *larger* gradients at initialisation, never vanishing ones (lesson 12 sees it in GoogLeNet).
# That is why torchvision's GoogLeNet and our CIFAR model train from the default
# initialisation.

# %%
act_bn, grad_bn = results["default + batch norm"]
f_bn = (grad_bn[1] / grad_bn[-1]) ** (2 / (DEPTH - 2))
print(
    f"default + batch norm: activation RMS {act_bn.min():.3f}-{act_bn.max():.3f} over all "
    f"layers (relu of a standard normal: {math.sqrt(0.5):.3f}); gradient factor per layer "
    f"{f_bn:.3f} (predicted {1 / (1 - 1 / math.pi):.3f}), layer 1 / layer 20 = "
    f"{grad_bn[0] / grad_bn[-1]:.1f}"
)
assert np.allclose(act_bn, math.sqrt(0.5), atol=0.03)
assert abs(f_bn * (1 - 1 / math.pi) - 1) < 0.15

fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharex=True)
colors = {"PyTorch default": "#d62728", "Xavier": "#ff7f0e", "He": "#2ca02c"}
colors["default + batch norm"] = "#1f77b4"
layers = np.arange(1, DEPTH + 1)
for name, (act, grad) in results.items():
    factor = predicted.get(name, 1 / (1 - 1 / math.pi))  # batch norm: backward (section 5)
    label = f"{name} (mean square x{factor:.2g} per layer)"
    axes[0].semilogy(layers, act, "o-", ms=4, color=colors[name], label=label)
    axes[1].semilogy(layers, grad, "o-", ms=4, color=colors[name], label=label)
axes[0].axhline(math.sqrt(v_floor), color="gray", ls=":", label="default's floor (biases)")
axes[0].set(ylabel="RMS of the layer's output", title="Forward: activation scale per layer")
axes[1].set(ylabel="RMS of dL/d(layer output)", title="Backward: gradient scale per layer")
for ax in axes:
    ax.set(xlabel="layer (1 = next to the input)")
    ax.set_xticks(layers[::2])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
fig.suptitle("20 conv 3x3 + ReLU layers, 16 channels: the initialisation's gain sets the factor")
fig.tight_layout()
save(fig, out / "11_init_depth.png")

# %% [markdown]
# ## Exercises
# 1. Which standard deviation keeps a ReLU layer with fan_in = 144 at factor 1? Set
#    `my_std` below and run the check: it says whether fan_in * my_std^2 / 2 is 1, then builds
#    the 20 layers with N(0, my_std^2) weights and shows the gradient reaching layer 2 against
#    layer 20's (averaged over 4 random networks: one network alone varies by 2x either way).
# 2. Leaky ReLU with slope 0.2 keeps (1 + 0.2^2) / 2 of the mean square instead of 1/2. Predict
#    the default initialisation's factor per layer with it, set `my_factor`, and check.

# %%
rng = np.random.default_rng(14)
my_std = None  # exercise 1: your answer, a number
my_factor = None  # exercise 2: your answer, a number


def gradient_ratio(std):
    """Root-mean-square gradient at layer 2 over layer 20's, for N(0, std^2) weights."""
    h = images
    hs = []
    for i in range(DEPTH):
        w = rng.standard_normal((C, 3 if i == 0 else C, K, K)) * std
        w = md.tensor(w, requires_grad=True)  # a graph is recorded only if something needs grad
        h = F.relu(F.conv2d(h, w, padding=1))
        h.retain_grad()
        hs.append(h)
    h.backward(rng.standard_normal(h.shape))
    return np.sqrt(np.mean(hs[1].grad.numpy() ** 2) / np.mean(hs[-1].grad.numpy() ** 2))


report("exercise 1", check_he_std(my_std, fan))
if my_std is not None:  # what that std does to 20 layers, right or wrong
    factor = fan * my_std**2 / 2
    ratio = np.exp(np.mean([np.log(gradient_ratio(my_std)) for _ in range(4)]))
    print(
        f"  with std {my_std:.4g}: factor per layer {factor:.3g}; measured gradient at layer 2 / "
        f"layer 20: {ratio:.3g}, near sqrt({factor:.3g}^18) = {factor**9:.3g}"
    )
report("exercise 2", check_leaky_factor(my_factor))
