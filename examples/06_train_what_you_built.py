# %% [markdown]
"""Lesson 6: train what you built: a small network learns two moons with a hand-written SGD loop.

What it teaches: lesson 5 derived the backward of linear, ReLU and softmax + cross-entropy, and
that is all a small classifier needs. Here a 2 -> 16 -> 16 -> 2 network made of minidl's Linear
and ReLU learns to tell apart two interleaved half-moons of points, generated with NumPy. We check
that one backward through the network gives exactly the gradients of lesson 5's formulas, then
train it with a stochastic gradient descent (SGD) loop of about fifteen lines that you can read
line by line: forward, loss, zero the gradients, backward, update. A picture shows the decision
boundary it learned, beside what a straight line can do. Then momentum and weight decay: derived,
added to the loop by hand, and checked step for step against ``md.optim.SGD``, the optimizer the
later lessons train with.

Run it: ``python examples/06_train_what_you_built.py [--quick]``.
Pictures: ``examples/output/06_*.png``.
"""

# %% [markdown]
# ## Set-up
# The whole lesson trains in a few seconds on a 2-core CPU; `--quick` trains for fewer epochs
# (an epoch is one pass over the training set), still enough to pass 95% on the test set.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_momentum_factor, check_nesterov_step, report
from _lesson import parse_args, save
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.lines import Line2D

import minidl as md
import minidl.functional as F
from minidl import nn

args = parse_args(__doc__.splitlines()[0], quick=True)
out = args.output
epochs = 50 if args.quick else 100
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)), and
# each cell that trains builds its network afresh: run a cell again and it prints the same.

# %% [markdown]
# ## 1. The data: two moons
# Two half-circles of radius 1, one opening down (class 0) and one opening up (class 1), shifted
# so that each reaches into the other's hollow, with Gaussian noise added to every point. No
# straight line separates them: a classifier has to bend its boundary. 400 points to train on,
# 400 others (drawn the same way) to test on.


# %%
def two_moons(n, noise, rng):
    """n points (float32, n x 2) and their labels (0 or 1): two interleaved half-circles."""
    label = rng.integers(0, 2, n)
    angle = rng.uniform(0, np.pi, n)
    x = np.where(label == 0, np.cos(angle), 1 - np.cos(angle))
    y = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return (points - [0.5, 0.25]).astype(np.float32), label  # centred near (0, 0)


rng = np.random.default_rng(0)
x_train, y_train = two_moons(400, 0.15, rng)
x_test, y_test = two_moons(400, 0.15, rng)
print(f"training points {x_train.shape}, labels {y_train.shape}: {np.bincount(y_train)} per class")
print(f"test points {x_test.shape}: {np.bincount(y_test)} per class")
print("the first three training points and their labels:")
for point, label in zip(x_train[:3], y_train[:3]):
    print(f"  ({point[0]:+.3f}, {point[1]:+.3f}) -> class {label}")

# %% [markdown]
# ## 2. The network, and the backward lesson 5 derived
# Linear(2, 16), ReLU, Linear(16, 16), ReLU, Linear(16, 2): two numbers in, two logits out (one
# per class), 354 parameters. Its backward uses three of lesson 5's derivations and nothing else:
#
#     cross-entropy of the logits z     dz = (p - onehot) / N         lesson 5, section 3
#     each Linear, y = x W^T + b         dW = g^T x, db = sum of g,    lesson 5, section 1
#                                        dx = g W (passed down)
#     each ReLU                          dx = g * (x > 0)              lesson 5, section 2
#
# We run one batch of 32 through it, let minidl's backward fill every `p.grad`, and redo the same
# backward by hand in NumPy with those formulas, last layer first. Before training the network
# guesses: each class gets about 1/2, so the loss should be near -log(1/2) = log 2 = 0.693.


# %%
def make_model():
    """The network with the same starting weights every time (seed 0)."""
    nn.init.manual_seed(0)
    return nn.Sequential(
        nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
    )


model = make_model()
print(model)
print(f"{model.num_parameters()} parameters")
xb, yb = x_train[:32], y_train[:32]
loss = F.cross_entropy(model(md.tensor(xb)), md.tensor(yb))
model.zero_grad()  # every p.grad = None: nothing left from an earlier run of this cell
loss.backward()
print(f"loss of the untrained network on one batch: {loss.item():.3f} (log 2 = {np.log(2):.3f})")

# The same backward by hand, in float64 (the network's weights are float32).
W1, b1, W2, b2, W3, b3 = (p.numpy().astype(np.float64) for p in model.parameters())
a1 = xb @ W1.T + b1  # forward again, keeping what backward needs
h1 = np.maximum(a1, 0)
a2 = h1 @ W2.T + b2
h2 = np.maximum(a2, 0)
z = h2 @ W3.T + b3
prob = np.exp(z - z.max(axis=1, keepdims=True))
prob /= prob.sum(axis=1, keepdims=True)
dz = (prob - np.eye(2)[yb]) / len(yb)  # section 3: softmax + cross-entropy
dW3, db3, dh2 = dz.T @ h2, dz.sum(axis=0), dz @ W3  # section 1: linear
da2 = dh2 * (a2 > 0)  # section 2: ReLU
dW2, db2, dh1 = da2.T @ h1, da2.sum(axis=0), da2 @ W2  # linear
da1 = dh1 * (a1 > 0)  # ReLU
dW1, db1 = da1.T @ xb, da1.sum(axis=0)  # linear (dx: no one needs the input's gradient)
print("minidl's gradients against lesson 5's formulas, worst relative difference:")
for (name, p), mine in zip(model.named_parameters(), (dW1, db1, dW2, db2, dW3, db3)):
    error = np.abs(p.grad.numpy() - mine).max() / np.abs(mine).max()
    print(f"  {name:9s} {str(p.shape):9s} {error:.1e}")
    assert error < 1e-5, f"{name}: minidl's gradient and the formulas disagree ({error:.1e})"

# %% [markdown]
# ## 3. The training loop, by hand
# Stochastic gradient descent: take a small batch of points, compute the loss, its gradient with
# respect to every parameter, and move each parameter a little against its gradient:
# p <- p - lr * dL/dp, with lr the learning rate. Each epoch visits the 400 training points once,
# in a new random order, 32 at a time (13 steps, the last one with 16 points).
#
# Three things to notice in the loop. Gradients accumulate (lesson 1), so they are dropped before
# each backward: `p.grad = None` (what `model.zero_grad()` does). The update changes `p.data`,
# the bare NumPy array inside the parameter, in place: arithmetic on `p.data` records no graph,
# and the parameter stays the same leaf tensor. And `p.grad` is a Tensor too: its array is
# `p.grad.data`.


# %%
def accuracy(model, x, y):
    """The share of the points whose larger logit is their true class."""
    with md.no_grad():
        return float((model(md.tensor(x)).numpy().argmax(axis=1) == y).mean())


def train_sgd(model, lr, epochs, batch=32, log_every=10):
    """Plain SGD on the training set; returns each epoch's mean training loss."""
    params = list(model.parameters())
    order_rng = np.random.default_rng(1)  # the batches' order: the same on every run
    losses = []
    for epoch in range(1, epochs + 1):
        order, total = order_rng.permutation(len(x_train)), 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            logits = model(md.tensor(x_train[idx]))  # forward: Linear, ReLU, Linear, ...
            loss = F.cross_entropy(logits, md.tensor(y_train[idx]))
            for p in params:
                p.grad = None  # zero the gradients: backward adds to them
            loss.backward()  # lesson 5's backwards, last layer first
            for p in params:
                p.data -= lr * p.grad.data  # the SGD step, in place
            total += loss.item() * len(idx)
        losses.append(total / len(x_train))
        if epoch % log_every == 0 or epoch == epochs:
            train_acc, test_acc = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
            print(f"  epoch {epoch:3d}: mean training loss {losses[-1]:.4f}, "
                  f"accuracy {train_acc:6.1%} train, {test_acc:6.1%} test")  # fmt: skip
    return losses


model = make_model()
print(f"plain SGD, lr 0.1, {epochs} epochs of batches of 32:")
start = time.perf_counter()
losses_plain = train_sgd(model, lr=0.1, epochs=epochs)
seconds = time.perf_counter() - start
test_acc = accuracy(model, x_test, y_test)
print(f"trained in {seconds:.1f} s; test accuracy {test_acc:.1%}")
assert test_acc >= 0.95, f"the network reached only {test_acc:.1%} on the test points"

# %% [markdown]
# What the hidden layers buy: the same loop on Linear(2, 2) alone, a straight boundary between
# the classes (logistic regression). It cannot follow the moons' curves, however long it trains.

# %%
nn.init.manual_seed(0)
line = nn.Linear(2, 2)
print(f"one Linear(2, 2), plain SGD, lr 0.1, {epochs} epochs:")
train_sgd(line, lr=0.1, epochs=epochs, log_every=epochs)
line_acc = accuracy(line, x_test, y_test)

# %% [markdown]
# ## 4. The decision boundary
# The network gives every point of the plane, not only the data, a probability of class 1:
# softmax of its two logits. We evaluate it on a 200 x 200 grid and colour the plane by that
# probability; the black line where it is exactly 1/2 is the *decision boundary*, where the
# prediction changes class. The dots are the test points, in their true class's colour; the ones
# the model gets wrong are ringed in black. Left, the network before training: unsure everywhere
# (pale, near 1/2), its boundary wherever the random weights happened to put it. Middle, the
# straight line of the cell above. Right, the trained network: sure away from the data's overlap,
# its boundary bent between the moons.

# %%
everything = np.concatenate([x_train, x_test])
low, high = everything.min(axis=0) - 0.3, everything.max(axis=0) + 0.3  # a margin round the data
gx, gy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def prob_class_1(net, points):
    with md.no_grad():
        return F.softmax(net(md.tensor(points)), axis=1).numpy()[:, 1]


colours = np.array(["#1f77b4", "#ff7f0e"])  # class 0 blue, class 1 orange
shading = LinearSegmentedColormap.from_list("blue_white_orange", [colours[0], "white", colours[1]])
panels = [
    (make_model(), "before training"),
    (line, "a straight line: Linear(2, 2) alone, trained"),
    (model, f"the trained network, after {epochs} epochs"),
]
fig, axes = plt.subplots(1, 3, figsize=(17, 4.7), layout="constrained")
for ax, (net, title) in zip(axes, panels):
    p1 = prob_class_1(net, grid).reshape(gx.shape)
    shade = ax.contourf(gx, gy, p1, levels=np.linspace(0, 1, 11), cmap=shading, alpha=0.45)
    ax.contour(gx, gy, p1, levels=[0.5], colors="black", linewidths=2)
    wrong = prob_class_1(net, x_test).round() != y_test
    ax.scatter(*x_test.T, c=colours[y_test], s=16, edgecolors="#333333", linewidths=0.4)
    ax.scatter(*x_test[wrong].T, s=70, facecolors="none", edgecolors="black", linewidths=1.3)
    ax.set_title(f"{title}\ntest accuracy {1 - wrong.mean():.1%} ({wrong.sum()} of "
                 f"{len(y_test)} test points wrong)", fontsize=11)  # fmt: skip
    ax.set(xlabel="first coordinate", ylabel="second coordinate", aspect="equal")
fig.colorbar(shade, ax=axes, shrink=0.85, label="the model's probability of class 1")
handles = [
    Line2D([], [], color="black", lw=2, label="decision boundary (probability 1/2)"),
    Line2D([], [], ls="", marker="o", color=colours[0], mec="#333333", label="test point, class 0"),
    Line2D([], [], ls="", marker="o", color=colours[1], mec="#333333", label="test point, class 1"),
    Line2D([], [], ls="", marker="o", mfc="none", mec="black", ms=9, label="predicted wrong"),
]
fig.legend(handles=handles, loc="outside lower center", ncol=4)
fig.suptitle("Two moons: what a 2-16-16-2 ReLU network predicts at every point of the plane "
             "(pale: unsure, near 1/2)", fontsize=13)  # fmt: skip
save(fig, out / "06_decision_boundary.png")

# %% [markdown]
# ## 5. Momentum and weight decay
# Plain SGD steps along the current batch's gradient only. The optimizer the later lessons use
# adds two things. In PyTorch's convention, which `md.optim.SGD` follows (minidl/optim/sgd.py),
# one step for a parameter p with gradient grad is
#
#     g = grad + wd * p        weight decay: the gradient of a penalty wd/2 * |p|^2 on the loss
#     v = mu * v + g           momentum: the velocity v (0 at the start) gathers past gradients
#     p = p - lr * v           the step goes along the velocity, not along g
#
# Why momentum helps. Unrolled, v = g_t + mu g_(t-1) + mu^2 g_(t-2) + ...: a sum of recent
# gradients, older ones counting less. Where the gradients agree from step to step (a long,
# gentle slope) the terms add up, and the steps grow well beyond plain SGD's lr * g (how far:
# exercise 2). Where they change sign from step to step (the batch's noise, or bouncing between
# the steep walls of a narrow valley) they cancel. So a learning rate small enough for the steep
# directions still moves fast along the flat ones.
#
# Weight decay pulls every weight towards 0: with no gradient from the loss (and no momentum), a
# weight shrinks by a factor (1 - lr * wd) every step, so a weight stays large only while the
# loss keeps pushing it there. Small weights make smoother functions, which tend to generalise
# better.
#
# By hand, per parameter, in place: `momentum_update` below. The loop is section 3's with two
# changes: a velocity per parameter, starting at zero, and this update instead of
# `p.data -= lr * p.grad.data`. With mu = 0 and wd = 0 it is exactly plain SGD again.


# %%
def momentum_update(params, velocity, lr, mu, wd):
    """One SGD step with momentum mu and weight decay wd, by hand, in place."""
    for p, v in zip(params, velocity):
        g = p.grad.data + wd * p.data  # weight decay joins the gradient
        v *= mu  # the velocity: mu times the old one ...
        v += g  # ... plus this gradient
        p.data -= lr * v  # the step goes along the velocity


def train_momentum(model, lr, mu, wd, epochs, batch=32, log_every=10):
    """Section 3's loop with momentum and weight decay; returns each epoch's mean loss."""
    params = list(model.parameters())
    velocity = [np.zeros_like(p.data) for p in params]  # new: one velocity per parameter
    order_rng = np.random.default_rng(1)  # the same batches as section 3
    losses = []
    for epoch in range(1, epochs + 1):
        order, total = order_rng.permutation(len(x_train)), 0.0
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(md.tensor(x_train[idx])), md.tensor(y_train[idx]))
            for p in params:
                p.grad = None
            loss.backward()
            momentum_update(params, velocity, lr, mu, wd)  # new: instead of p -= lr * grad
            total += loss.item() * len(idx)
        losses.append(total / len(x_train))
        if epoch % log_every == 0 or epoch == epochs:
            train_acc, test_acc = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
            print(f"  epoch {epoch:3d}: mean training loss {losses[-1]:.4f}, "
                  f"accuracy {train_acc:6.1%} train, {test_acc:6.1%} test")  # fmt: skip
    return losses


# %% [markdown]
# Is `momentum_update` what `md.optim.SGD(params, lr, momentum=mu, weight_decay=wd)` does? Two
# copies of the network with the same starting weights, the same 8 batches, the same gradients:
# one copy takes our step, the other the optimizer's, and after every step we compare all their
# weights. (The optimizer keeps its velocity, PyTorch's "momentum buffer", inside itself.)

# %%
lr, mu, wd = 0.02, 0.9, 5e-4
hand, library = make_model(), make_model()  # the same weights (seed 0), two copies
hand_params, library_params = list(hand.parameters()), list(library.parameters())
velocity = [np.zeros_like(p.data) for p in hand_params]
optimizer = md.optim.SGD(library_params, lr=lr, momentum=mu, weight_decay=wd)
start_weights = [p.numpy().copy() for p in hand_params]
batches = np.random.default_rng(2).permutation(len(x_train))[: 8 * 32].reshape(8, 32)
print(f"our momentum_update vs md.optim.SGD(lr={lr}, momentum={mu}, weight_decay={wd}):")
for step, idx in enumerate(batches, 1):
    for net in (hand, library):
        net.zero_grad()
        F.cross_entropy(net(md.tensor(x_train[idx])), md.tensor(y_train[idx])).backward()
    momentum_update(hand_params, velocity, lr, mu, wd)
    optimizer.step()
    gap = max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(hand_params, library_params))
    moved = max(np.abs(a.numpy() - s).max() for a, s in zip(hand_params, start_weights))
    same = f"{gap:.1e}" if gap else "none, bit for bit"
    print(f"  step {step}: the weights have moved up to {moved:.4f} from the start; "
          f"largest difference between the copies: {same}")  # fmt: skip
    assert gap <= 1e-6, f"step {step}: our update and md.optim.SGD's differ by {gap:.1e}"
print("the same, step for step (float32)")

# %% [markdown]
# Now train with it. Plain SGD at lr 0.02 (mu = 0, wd = 0) against momentum 0.9 with weight decay
# 5e-4 at the same lr 0.02, beside section 3's plain SGD at lr 0.1: same network, same batches.

# %%
runs = {"plain SGD, lr 0.1 (section 3)": losses_plain}
settings = {  # (lr, mu, wd)
    "plain SGD, lr 0.02": (0.02, 0.0, 0.0),
    "momentum 0.9 + weight decay 5e-4, lr 0.02": (0.02, 0.9, 5e-4),
}
accuracies = {"plain SGD, lr 0.1 (section 3)": test_acc}
for label, (lr, mu, wd) in settings.items():
    print(f"{label}:")
    net = make_model()
    runs[label] = train_momentum(net, lr, mu, wd, epochs, log_every=epochs // 2)
    accuracies[label] = accuracy(net, x_test, y_test)
assert accuracies["momentum 0.9 + weight decay 5e-4, lr 0.02"] >= 0.95

fig, ax = plt.subplots(figsize=(9, 5))
for (label, losses), colour in zip(runs.items(), ["#7f7f7f", "#1f77b4", "#d62728"]):
    ax.plot(range(1, epochs + 1), losses, color=colour, lw=2,
            label=f"{label}: test accuracy {accuracies[label]:.1%}")  # fmt: skip
ax.set_yscale("log")
ticks = [0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0]
ax.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
ax.set_yticks([], minor=True)
ax.set_ylim(min(min(v) for v in runs.values()) * 0.8, 1.0)
ax.set(xlabel="epoch (13 steps each)", ylabel="mean training loss of the epoch (log scale)",
       title="Momentum: the same small learning rate, much faster progress")  # fmt: skip
ax.grid(alpha=0.3)
ax.legend()
save(fig, out / "06_momentum.png")

# %% [markdown]
# ## Exercises
# 1. Nesterov momentum (lesson 15 trains with it) looks one step ahead. Its velocity is the same
#    as plain momentum's, but the step is not taken along v alone: read SGD's docstring in
#    `minidl/optim/sgd.py` (or the glossary in examples/README.md). Write one step of it on NumPy
#    arrays: `my_nesterov_step(p, grad, v, lr, mu, wd)` returns the new p and the new v, weight
#    decay included as in section 5. The check runs five steps of it against
#    `md.optim.SGD(..., nesterov=True)`. A worked answer is in `examples/_solutions.py`: open it
#    after you have tried.
# 2. Feed SGD with momentum mu = 0.95 the same gradient g at every step. The steps grow, then
#    settle at a fixed multiple of plain SGD's step lr * g. Which multiple? Set `my_factor`.


# %%
def my_nesterov_step(p, grad, v, lr, mu, wd):
    """Exercise 1: one SGD step with Nesterov momentum and weight decay: (new p, new v)."""
    return None  # your code here


my_factor = None  # exercise 2: a number

report("exercise 1", check_nesterov_step(my_nesterov_step))
report("exercise 2", check_momentum_factor(my_factor))
