# %% [markdown]
"""Lesson 15: train the scaled-down GoogLeNet on CIFAR-10, on the CPU.

What it teaches: everything so far, put to work. A training step is five lines (forward, loss,
zero the gradients, backward, optimizer step): we read them in the library, where the same step
serves ``python googlenet.py train``, read the loop around them (``minidl.train.fit_simple``,
about 20 lines) and run it, then train with the library's full loop (``minidl.train.fit``). We
check the loss at initialisation (it should be log 10 = 2.30 for 10 classes), train on a subset
of CIFAR-10 within a time budget, plot the curves (and see why the test loss spikes early), show
test images with the predicted and true labels, the confusion matrix, the first layer's filters
before and after training, and what inception 3a's four branches make of one test image.

The default run takes about a minute on a 2-core CPU and reaches roughly 35-45% test
accuracy (chance is 10%); ``python googlenet.py train`` is the full recipe (91.8% in 88
minutes on a 2-core CPU, records/README.md). ``--quick`` trains a tiny model on a few hundred
images for a smoke test.

Data: ``--data PATH`` (a ``cifar-10-batches-py`` folder or its parent), else ``$MINIDL_CIFAR10``,
else ``~/.cache/minidl/cifar10`` (where ``python googlenet.py train`` downloads it); without any,
a generated stand-in set, so the lesson still runs.

Run it: ``python examples/15_train_cifar10.py [--quick] [--data PATH]``.
Pictures: ``examples/output/15_*.png``.
"""

# %% [markdown]
# ## Set-up
# The options let you train longer or wider; the defaults fit in about a minute.

# %%
import os

# Before NumPy loads: "Why the lesson sets OPENBLAS_THREAD_TIMEOUT", near the end, says why.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import inspect
import math
import time

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_batch_bytes_uint8, check_steps_per_epoch, report
from _lesson import load_cifar10, parse_args, save, shown, too_few_steps

import minidl as md
import minidl.functional as F
from googlenet import googlenet_cifar
from minidl import nn, optim
from minidl.data import (
    Compose,
    DataLoader,
    Normalize,
    RandomHorizontalFlip,
    ToFloat,
    cifar10_test_transform,
)
from minidl.summary import profile
from minidl.train import evaluate, fit, fit_simple, train_step
from minidl.train.metrics import confusion_matrix, format_confusion
from minidl.viz import plot_confusion


def options(parser):
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (cifar-10-batches-py)")
    parser.add_argument("--width", type=float, default=None, help="channel multiplier (1/8)")
    parser.add_argument("--train-images", type=int, default=None, help="training subset (4000)")
    parser.add_argument("--test-images", type=int, default=None, help="test subset (1000)")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the subset (2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (one-cycle)")
    parser.add_argument("--budget", type=float, default=None, help="stop training after S s (80)")


args = parse_args(__doc__.splitlines()[0], quick=True, extra=options)
out = args.output
quick_defaults = dict(width=1 / 16, train_images=256, test_images=128, epochs=1, budget=20)
full_defaults = dict(width=1 / 8, train_images=4000, test_images=1000, epochs=2, budget=80)
for key, value in (quick_defaults if args.quick else full_defaults).items():
    if getattr(args, key) is None:
        setattr(args, key, value)
if args.quick:
    args.batch_size = min(args.batch_size, 32)
nn.init.manual_seed(0)

# %% [markdown]
# ## 1. The data
# A random subset of the 50,000 training and 10,000 test images. Images stay uint8 (N, 32, 32, 3)
# in memory; the DataLoader turns each batch into float32 NCHW, flips half of the training
# images left-right (a free extra view of the same object) and normalises every channel with
# the CIFAR-10 mean and standard deviation.

# %%
train_x, train_y, test_x, test_y, classes, source = load_cifar10(
    args.data, args.train_images, args.test_images
)
print(source)
print(f"training images {train_x.shape}, test images {test_x.shape}, classes: {', '.join(classes)}")
print("training images per class:", np.bincount(train_y, minlength=10).tolist())
args.batch_size = min(args.batch_size, len(train_x))  # a tiny data set still gets steps
train_loader = DataLoader(
    (train_x, train_y),
    batch_size=args.batch_size,
    shuffle=True,
    drop_last=True,
    seed=0,
    transform=Compose([RandomHorizontalFlip(), ToFloat(), Normalize()]),
)
test_loader = DataLoader((test_x, test_y), batch_size=250, transform=cifar10_test_transform())

# %% [markdown]
# ## 2. The model
# GoogLeNet for 32x32 images (a 3x3 stem, no early downsampling, inception 3a-5b, global average
# pooling; batch norm after every convolution), every channel count multiplied by `width`.

# %%
model = googlenet_cifar(width=args.width)
model.fuse()  # the same values with fewer passes over memory, as `googlenet.py train` has it
stats = profile(model.eval(), md.tensor(np.zeros((1, 3, 32, 32), np.float32)))
print(
    f"GoogLeNet-CIFAR, width {args.width:g}: {model.num_parameters():,} parameters, "
    f"{stats[''].macs / 1e6:.1f} M multiply-adds per image"
)
# The weights and batch norm's statistics as built, copied: the training cell starts from them
# each time it runs, so that running it again trains the same network again.
initial_state = {name: t.numpy().copy() for name, t in model.state_dict().items()}
filters_before = initial_state["conv1.conv.weight"]

# %% [markdown]
# ## 3. Sanity check: the loss before training
# With small random weights the 10 logits are nearly equal, softmax gives each class about 1/10,
# and the cross-entropy is -log(1/10) = log 10 = 2.303. Far from that means a bug (or a bad
# initialisation) before any training has happened.


# %%
loss0, acc0, _, _ = evaluate(model, test_loader)  # (minidl.train.evaluate: eval mode, no graph)
print(f"before training: test loss {loss0:.3f} (log 10 = {math.log(10):.3f}), accuracy {acc0:.1%}")

# %% [markdown]
# ## 4. The training loop
# SGD with Nesterov momentum 0.9 and weight decay 5e-4 (the usual CIFAR recipe), and a
# one-cycle learning rate: up to `--lr` over the first 30% of the steps, then down to almost 0,
# which gets the most out of a short run. Each step is the five lines at the heart of every
# deep-learning program. They live in the library, `minidl.train.train_step`, the one step
# that this lesson and `python googlenet.py train` both run:

# %%
print(inspect.getsource(train_step))

# %% [markdown]
# A training run is that step inside two loops, epochs and batches: the learning-rate schedule
# is stepped after every batch, and the model is tested after each epoch (in eval mode: dropout
# off, batch norm with its running statistics). `minidl.train.fit_simple` is that loop and
# nothing else:

# %%
print(inspect.getsource(fit_simple))

# %% [markdown]
# Run it on a fresh model, two epochs over four batches, with a plain SGD (a taste: a few
# batches teach little; the real run is next). Each line is one epoch's row.

# %%
nn.init.manual_seed(1)  # (seeded here, so the cell prints the same when run again)
np.random.seed(1)
taste_model = googlenet_cifar(width=args.width)
taste_batches = DataLoader(
    (train_x[: 4 * args.batch_size], train_y[: 4 * args.batch_size]),
    batch_size=args.batch_size, shuffle=True, drop_last=True, seed=1,
    transform=Compose([RandomHorizontalFlip(), ToFloat(), Normalize()]),
)  # fmt: skip
taste_optimizer = optim.SGD(taste_model.parameters(), lr=args.lr, momentum=0.9)
taste = fit_simple(
    taste_model, F.cross_entropy, taste_batches, taste_optimizer, 2, test_loader=test_loader
)

# %% [markdown]
# `fit` is the same loop with the chores a real run needs: a progress bar, a line per epoch
# (given a folder it also writes metrics, curves and checkpoints, as `googlenet.py train` does),
# resuming, Ctrl-C, a time budget. After every step it calls our
# `on_step`, which keeps each batch's loss and learning rate, evaluates on the test subset every
# few steps, and returns True to stop once the time budget runs out (the schedule is planned
# for all the steps, so an early stop ends at a higher rate).
#
# Training changes the model, the optimizer's momentum, the schedule, the loader's random
# generator and NumPy's (dropout's masks), so the cell starts by setting all of them back: run
# it again and it trains the same network again, from the same start, to the same losses.

# %%
model.load_state_dict(initial_state)  # the weights and batch norm's statistics as built
train_loader.rng = np.random.default_rng(0)  # the same shuffles and flips as a fresh loader's
np.random.seed(0)  # dropout's masks
optimizer = optim.SGD(
    model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
)
total_steps = args.epochs * len(train_loader)
scheduler = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total_steps)
# six evaluations spread evenly, the last at the last step: every point of the curves then
# averages about as many training batches (a short last window would be a noisy outlier)
evaluations = max(1, min(6, total_steps // 2))
eval_steps = {round(total_steps * k / evaluations) for k in range(1, evaluations + 1)}
history = {"step": [], "train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
per_step = {"loss": [], "lr": []}  # every step's batch loss and learning rate
running = {"loss": 0.0, "correct": 0, "n": 0}  # sums since the last evaluation
last_test = {}  # the latest evaluation's predictions
print(
    f"{total_steps} steps of {args.batch_size} images ({args.epochs} epochs of "
    f"{len(train_loader)} steps), evaluating {evaluations} times; budget {args.budget:g} s"
)
start = time.perf_counter()


def on_step(s):
    per_step["loss"].append(s.loss)
    per_step["lr"].append(s.lr)
    running["loss"] += s.loss * s.size
    running["correct"] += s.correct
    running["n"] += s.size
    out_of_time = time.perf_counter() - start > args.budget
    if s.step in eval_steps or out_of_time:
        test = evaluate(model, test_loader)
        model.train()
        train_loss, train_acc = running["loss"] / running["n"], running["correct"] / running["n"]
        for key, value in zip(history, (s.step, train_loss, train_acc, test.loss, test.accuracy)):
            history[key].append(value)
        last_test["predictions"] = test.predictions
        elapsed = time.perf_counter() - start
        print(
            f"  step {s.step:>4}/{total_steps}  epoch {s.epoch + 1}  lr {s.lr:.3f}"
            f"  train loss {train_loss:.3f} acc {train_acc:5.1%}"
            f"  | test loss {test.loss:.3f} acc {test.accuracy:5.1%}"
            f"  | {elapsed:5.1f} s, {s.step * args.batch_size / elapsed:.0f} img/s"
        )
        running.update(loss=0.0, correct=0, n=0)
    return out_of_time


result = fit(
    model, F.cross_entropy, train_loader, optimizer, args.epochs,
    schedule=scheduler, on_step=on_step, progress=False,
)  # fmt: skip
step = len(per_step["loss"])
if not result.finished:
    print(f"time budget of {args.budget:g} s used up after {step} steps: stopping here")
warning = too_few_steps(step, total_steps, args.budget)
if warning:
    print(warning)

# %% [markdown]
# ## 5. The curves
# Left: every step's batch loss (noisy: 64 images each), its average between evaluations, and the
# test loss, starting from the untrained model at step 0. Middle: accuracy. Right: the one-cycle
# learning-rate schedule that was followed.
#
# The test loss often spikes early, near the peak learning rate, while the training loss falls.
# The weights are not to blame: in evaluation mode batch norm normalises with running averages of
# past batches' statistics, and at a high rate the weights change faster than those averages
# follow. Measured on CIFAR-10 with the defaults, at step 40 (rate 0.050): test loss 3.97 in
# evaluation mode (3.08 at step 41, the curve's point: near the peak it swings from step to
# step), but 1.82 with batch norm using the test batches' own statistics, and 1.82
# again with the running statistics re-estimated for the current weights (8 training batches,
# no training); that step's training batch had 1.82. By the last step the three agree (1.58-1.59).

# %%
steps = np.arange(1, len(per_step["loss"]) + 1)
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.5))
ax1.plot(steps, per_step["loss"], color="#1f77b4", alpha=0.3, lw=1, label="train, each batch")
ax1.plot(history["step"], history["train_loss"], "o-", color="#1f77b4", label="train, averaged")
ax1.plot([0, *history["step"]], [loss0, *history["test_loss"]], "s-", color="#ff7f0e", label="test")
ax1.axhline(math.log(10), color="gray", ls="--", lw=1, label="log 10 (guessing)")
ax1.set(xlabel="step", ylabel="cross-entropy loss", title="Loss")
ax2.plot(
    history["step"],
    100 * np.array(history["train_acc"]),
    "o-",
    color="#1f77b4",
    label="train (training mode)",
)
ax2.plot(
    [0, *history["step"]],
    [100 * acc0, *(100 * np.array(history["test_acc"]))],
    "s-",
    color="#ff7f0e",
    label="test",
)
ax2.axhline(10, color="gray", ls="--", lw=1, label="chance (10%)")
ax2.set(xlabel="step", ylabel="accuracy (%)", title="Accuracy")
ax3.plot(steps, per_step["lr"], color="#2ca02c")
ax3.set(
    xlabel="step",
    ylabel="learning rate",
    title=f"One-cycle schedule (planned {total_steps} steps)",
    xlim=(0, total_steps),
)
for ax in (ax1, ax2, ax3):
    ax.grid(alpha=0.3)
ax1.legend()
ax2.legend()
fig.suptitle(
    f"GoogLeNet-CIFAR (width {args.width:g}) on {len(train_x)} training images, {step} steps"
)
fig.tight_layout()
save(fig, out / "15_curves.png")

# %% [markdown]
# ## 6. Test images with the predicted and true labels
# Green titles are right, red ones wrong. Look at the mistakes: they are often understandable
# (cat vs dog, automobile vs truck).

# %%
# (on_step evaluated the model once more right after the last step: those predictions)
preds, test_acc = last_test["predictions"], history["test_acc"][-1]
print(f"final test accuracy {test_acc:.1%} on {len(preds)} images (chance: 10%)")
fig, axes = plt.subplots(4, 8, figsize=(14, 9.6))
for k, ax in enumerate(axes.ravel()):
    if k >= len(preds):
        ax.axis("off")
        continue
    ax.imshow(test_x[k], interpolation="nearest")
    ok = preds[k] == test_y[k]
    ax.set_title(
        f"pred: {classes[preds[k]]}\ntrue: {classes[test_y[k]]}",
        fontsize=9,
        color="#1a7f1a" if ok else "#c00000",
    )
    ax.axis("off")
fig.suptitle(
    f"Test images: predicted vs true label (accuracy on {len(preds)} test images: {test_acc:.1%})"
)
fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, hspace=0.45)
save(fig, out / "15_predictions.png")

# %% [markdown]
# ## 7. Which classes get confused
# Rows are the true class, columns the prediction; the diagonal holds the correct answers.

# %%
matrix = confusion_matrix(test_y[: len(preds)], preds, 10)
print(format_confusion(matrix, classes))
shown(plot_confusion(matrix, classes, out / "15_confusion.png"))

# %% [markdown]
# ## 8. The first layer's filters, before and after
# The stem's 3x3 kernels see the RGB pixels directly, so each can be shown as a tiny colour
# image (grey is 0). Shown: the filters that training changed most, each scaled to its own
# range so that a weak one is as visible as a strong one, before and after training and the
# change between (after - before). After the default run each filter is still mostly its random
# start; what training added is smooth: a colour of its own over the whole window (a colour
# detector) or light against dark across it (an edge), the first layer's classic features.

# %%
filters_after = model.conv1.conv.weight.numpy()
flat_before, flat_after = (f.reshape(len(f), -1) for f in (filters_before, filters_after))
moved = np.linalg.norm(flat_after - flat_before, axis=1) / np.linalg.norm(flat_before, axis=1)
shown_filters = np.argsort(-moved)[: min(10, len(moved))]  # the most changed first
filter_rows = (
    (filters_before, "before"),
    (filters_after, "after"),
    (filters_after - filters_before, "change"),
)
fig, axes = plt.subplots(3, len(shown_filters), figsize=(1.35 * len(shown_filters) + 0.8, 4.9))
for row, (weights, label) in enumerate(filter_rows):
    for col, k in enumerate(shown_filters):
        w = weights[k].transpose(1, 2, 0)  # 3x3x3, RGB last
        ax = axes[row, col]
        ax.imshow(w / (2 * np.abs(w).max()) + 0.5, interpolation="nearest")  # its own range
        ax.set_xticks([])
        ax.set_yticks([])
        if col == 0:
            ax.set_ylabel(label, fontsize=11)
        if row == 0:
            ax.set_title(f"filter {k}\nmoved {moved[k]:.0%}", fontsize=9)
fig.suptitle(
    f"The {len(shown_filters)} first-layer 3x3 filters (of {len(moved)}) that training changed "
    "most, each scaled to its own range (grey = 0)"
)
fig.tight_layout()
save(fig, out / "15_filters.png")

# %% [markdown]
# What those filters do is easier to see in their output: the first layer's feature maps (after
# batch norm and ReLU) for one test image. Each map lights up where its filter's pattern is.

# %%
model.eval()
k_img = int(np.argmax(preds == test_y[: len(preds)]))  # an image the model gets right
x_img = next(iter(test_loader))[0][k_img : k_img + 1]
with md.no_grad():
    maps = model.conv1(x_img).numpy()[0]  # channels x 32 x 32
fig, axes = plt.subplots(2, 8, figsize=(14, 4.2))
axes[0, 0].imshow(test_x[k_img], interpolation="nearest")
axes[0, 0].set_title(f"input: {classes[test_y[k_img]]}", fontsize=10)
for c, ax in zip(range(len(maps)), axes.ravel()[1:]):
    ax.imshow(maps[c], cmap="magma", interpolation="nearest")
    ax.set_title(f"channel {c}", fontsize=10)
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("First-layer feature maps after training (conv 3x3 -> BN -> ReLU), bright = strong")
fig.tight_layout()
save(fig, out / "15_feature_maps.png")

# %% [markdown]
# ## 9. Inside inception 3a: its four branches
# The same test image one stage further: what each of inception 3a's branches makes of the
# stem's maps, before the concatenation puts them side by side (lesson 9), a few channels of
# each (the strongest for this image), in evaluation mode. The 1x1 branch mixes the stem's
# channels pixel by pixel, so its maps keep the stem's sharp regions; the 3x3 branch sees a
# neighbourhood and answers to edges and thin structures; the "5x5" branch (a 3x3 in this model,
# behind its narrow 1x1 reduction) has only a few channels, often sparse spots; the pool branch's
# maps are blockier, its 3x3 max pool spreading each bright area before the 1x1 projection.

# %%
inception = model.inception3a
branches = [
    ("1x1", "1x1 conv", inception.branch1),
    ("3x3", "1x1 reduce, 3x3 conv", inception.branch2),
    ('"5x5"', f"1x1 reduce, {inception.kernel5}x{inception.kernel5} conv", inception.branch3),
    ("pool proj", "3x3 max pool, 1x1 conv", inception.branch4),
]
with md.no_grad():  # (model.eval() above: batch norm with its running statistics)
    stem_maps = model.conv1(x_img)
    branch_maps = [branch(stem_maps).numpy()[0] for _, _, branch in branches]
n_maps = min(4, *(len(m) for m in branch_maps))
fig = plt.figure(figsize=(2.2 * n_maps + 4.6, 9))
grid = fig.add_gridspec(4, n_maps + 2, width_ratios=[2.2, 1.3] + [1.8] * n_maps)
ax = fig.add_subplot(grid[1:3, 0])
ax.imshow(test_x[k_img], interpolation="nearest")
ax.set_title(f"input: {classes[test_y[k_img]]}", fontsize=11)
ax.axis("off")
for row, ((name, path, _), maps) in enumerate(zip(branches, branch_maps)):
    ax = fig.add_subplot(grid[row, 1])
    ax.text(0.5, 0.5, f"{name}\n({path})\n{len(maps)} channels", ha="center", va="center",
            fontsize=10, wrap=True)  # fmt: skip
    ax.axis("off")
    strongest = np.argsort(-maps.mean(axis=(1, 2)))[:n_maps]
    for col, c in enumerate(strongest):
        ax = fig.add_subplot(grid[row, col + 2])
        ax.imshow(maps[c], cmap="magma", interpolation="nearest")
        ax.set_title(f"channel {c}", fontsize=9)
        ax.axis("off")
fig.suptitle(
    f"Inception 3a's four branches on one test image, the {n_maps} strongest channels of each "
    "(bright = strong)"
)
fig.tight_layout()
save(fig, out / "15_inception_branches.png")

# %% [markdown]
# ## Why the lesson sets OPENBLAS_THREAD_TIMEOUT
# The set-up cell's first line asks OpenBLAS, the library behind NumPy's matrix products, to put
# its idle threads to sleep after a short spin. A training step alternates between matrix
# products on OpenBLAS's threads and minidl's own passes (im2col, pooling, batch norm) on its
# thread pool; OpenBLAS's threads keep spinning on the cores for a while after each product,
# taking them from minidl's. On this lesson's default run that cost 1.4x: 131 images/s without
# the setting, 181-183 with it (docs/training.md, "Threads on a shared machine"). OpenBLAS reads
# it once, when NumPy loads, so it must come before `import numpy`: in a notebook, in the first
# cell of a fresh kernel. `python googlenet.py train` sets it the same way; `setdefault` keeps a
# value you set yourself.

# %%
print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")

# %% [markdown]
# ## Exercises
# 1. The full recipe trains on 50,000 images in batches of 128, dropping the last incomplete
#    batch. How many optimizer steps is one epoch? Set `my_steps` and check.
# 2. The loader sends each batch to the device as uint8 and converts it there. How many bytes
#    does one batch of 128 CIFAR images (3x32x32) take as uint8, and how many as float32? Set
#    `my_bytes` to the pair and check.

# %%
my_steps = None  # exercise 1: an integer
my_bytes = None  # exercise 2: (uint8 bytes, float32 bytes)


report("exercise 1", check_steps_per_epoch(my_steps))
report("exercise 2", check_batch_bytes_uint8(my_bytes))
