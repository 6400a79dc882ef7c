# %% [markdown]
"""Lesson 16: the same training on a GPU, with CuPy.

What it teaches: minidl never calls NumPy directly on a tensor's data; every op asks the array
for its module (``get_array_module``), so the same code runs on CuPy arrays on an NVIDIA GPU.
Moving a model is ``model.to("cuda")``, moving data is the DataLoader's ``device="cuda"``. We
check that CPU and GPU compute the same loss from the same weights, time one training step on
each (CPU vs GPU, several model widths), and train the CIFAR GoogLeNet on the GPU for a minute.

Without CuPy or without a GPU the lesson says so and stops (exit status 0), unless
``MINIDL_SIMULATE_CUDA=1`` asks for the simulated CuPy: then the same code runs on the CPU behind
CuPy's rules (how the test suite checks this lesson), tiny and with timings that mean nothing.
To run it:
``pip install -e ".[cuda13]"`` (or ``.[cuda12]``) on a machine with an NVIDIA GPU, then
``python examples/16_train_on_gpu.py [--quick] [--data PATH]``.
Pictures: ``examples/output/16_*.png``.
"""

# %% [markdown]
# ## Set-up, and is there a GPU?
# `md.backend.import_cupy()` imports CuPy and asks CUDA for a device; its error says which of the
# two is missing. Without a GPU the lesson ends here (in Jupyter the run stops quietly, without
# a traceback; nothing is wrong).

# %%
import os

# As in lesson 15: OpenBLAS's idle threads asked to spin only briefly (they would take the
# cores from minidl's own threads on the CPU), before NumPy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import time

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_batch_bytes, report
from _lesson import load_cifar10, parse_args, save, shown, stop_here

import minidl as md
import minidl.functional as F
from googlenet import googlenet_cifar
from minidl import nn, optim, viz
from minidl.data import (
    Compose,
    DataLoader,
    Normalize,
    RandomHorizontalFlip,
    ToFloat,
    cifar10_test_transform,
)
from minidl.train import train_step


def options(parser):
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (cifar-10-batches-py)")
    parser.add_argument("--budget", type=float, default=None, help="GPU training seconds (60)")


args = parse_args(__doc__.splitlines()[0], quick=True, extra=options)
out = args.output
try:
    cp = md.backend.import_cupy()
except RuntimeError as err:
    stop_here(
        f"SKIPPED: this lesson needs CuPy and an NVIDIA GPU. {err}\n"
        'With this checkout, CuPy comes with: python -m pip install -e ".[cuda13]" (or '
        '".[cuda12]"), run in the repository\'s root on a machine with an NVIDIA GPU.\n'
        "Everything else in examples/ runs on the CPU; lesson 15 is this lesson's CPU twin."
    )
simulated = md.backend.is_simulated(cp)
if simulated:
    print("SIMULATED GPU (MINIDL_SIMULATE_CUDA=1): the GPU code path on the CPU; sizes shrunk.")
props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
print(
    f"GPU: {props['name'].decode()}, {props['totalGlobalMem'] / 2**30:.0f} GiB; "
    f"CuPy {cp.__version__}"
)
nn.init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.


def synchronize(device):
    """GPU work is queued and runs asynchronously: wait for it before reading the clock."""
    if device == "cuda":
        cp.cuda.Device().synchronize()


# %% [markdown]
# ## 1. Same weights, same answer
# Build a model on the CPU, copy its weights into a second one and move that to the GPU. A
# forward pass on the same images must give the same loss, up to float32 rounding (the GPU adds
# numbers in a different order).

# %%
nn.init.manual_seed(4)
rng = np.random.default_rng(4)
cpu_model = googlenet_cifar(width=0.125).eval()
gpu_model = googlenet_cifar(width=0.125)
gpu_model.load_state_dict(cpu_model.state_dict())
gpu_model = gpu_model.to("cuda").eval()
images = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
labels = rng.integers(0, 10, 16)
with md.no_grad():
    loss_cpu = F.cross_entropy(cpu_model(md.tensor(images)), md.tensor(labels)).item()
    loss_gpu = F.cross_entropy(
        gpu_model(md.tensor(images, device="cuda")), md.tensor(labels, device="cuda")
    ).item()
print(
    f"loss on the CPU {loss_cpu:.6f}, on the GPU {loss_gpu:.6f}, "
    f"difference {abs(loss_cpu - loss_gpu):.1e}"
)
print(
    f"a weight on the GPU is a {type(next(gpu_model.parameters()).data).__module__}.ndarray, "
    f"device {next(gpu_model.parameters()).device!r}"
)

# %% [markdown]
# ## 2. Time per training step: CPU vs GPU
# One step = forward, loss, backward, SGD update, on one batch that already sits on the device.
# The first step is a warm-up (CuPy compiles its kernels on first use, NumPy's caches fill), then
# we average over a few. The CPU is timed at the smallest width only: the widest model would take
# minutes per step there.


# %%
rng = np.random.default_rng(6)


def seconds_per_step(width, device, batch, steps):
    model = googlenet_cifar(width=width).fuse().to(device)  # as `googlenet.py train` has it
    model.train()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = md.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device=device)
    y = md.tensor(rng.integers(0, 10, batch), device=device)

    def step():
        train_step(model, F.cross_entropy, opt, x, y)  # lesson 15's step, from the library

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


batch = 8 if simulated else 32 if args.quick else 128
widths = [0.0625] if simulated else [0.125, 0.25] if args.quick else [0.25, 0.5, 1.0]
gpu_steps = 1 if simulated else 3 if args.quick else 10
timings = {("cpu", widths[0]): seconds_per_step(widths[0], "cpu", batch, 1 if args.quick else 2)}
for w in widths:
    timings[("cuda", w)] = seconds_per_step(w, "cuda", batch, gpu_steps)
print(f"batch of {batch} images, seconds per training step:")
for (device, w), s in timings.items():
    print(f"  width {w:<5g} {device:<4}: {s:8.3f} s  ({batch / s:7.0f} images/s)")
speedup = timings[("cpu", widths[0])] / timings[("cuda", widths[0])]
if simulated:
    print("(a simulated GPU: these times compare two CPU code paths, not a GPU)")
else:
    print(f"at width {widths[0]:g} the GPU is {speedup:.0f}x faster than this machine's CPU")

# %% [markdown]
# ## 3. Train on the GPU
# Lesson 15's recipe, with the data loader delivering batches straight to the GPU (each uint8
# batch is copied once, then flipped and normalised there). The GPU's speed buys a wider model
# and more images in the same time budget.

# %%
width = 0.0625 if simulated else 0.125 if args.quick else 0.5
n_train, n_test = (64, 32) if simulated else (512, 256) if args.quick else (50_000, 10_000)
budget = args.budget or (15 if args.quick else 60)
train_x, train_y, test_x, test_y, classes, source = load_cifar10(args.data, n_train, n_test)
print(source)
bs = min(128, len(train_x) // 4)  # at least 4 steps: OneCycle needs a warm-up and a decline
train_loader = DataLoader(
    (train_x, train_y),
    batch_size=bs,
    shuffle=True,
    drop_last=True,
    seed=0,
    transform=Compose([RandomHorizontalFlip(), ToFloat(), Normalize()]),
    device="cuda",
)
test_loader = DataLoader(
    (test_x, test_y), batch_size=500, transform=cifar10_test_transform(), device="cuda"
)
nn.init.manual_seed(8)
cp.random.seed(8)  # dropout's masks come from the array module's generator
model = googlenet_cifar(width=width).fuse().to("cuda")
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
epochs = 1 if args.quick else 3
total = epochs * len(train_loader)
sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)


def test_accuracy():
    model.eval()
    correct = 0
    with md.no_grad():
        for x, y in test_loader:
            correct += int((model(x).data.argmax(axis=1) == y.data).sum())
    model.train()
    return correct / len(test_x)


history = {"step": [], "train_loss": [], "test_acc": []}
print(
    f"width {width:g}: {model.num_parameters():,} parameters; {total} steps of {bs} planned, "
    f"budget {budget:g} s"
)
start, step, losses = time.perf_counter(), 0, []
model.train()
for _epoch in range(epochs):
    for x, y in train_loader:
        loss, _ = train_step(model, F.cross_entropy, opt, x, y)  # .item(): the host waits
        sched.step()
        step += 1
        losses.append(loss)
        if step % max(1, total // 10) == 0 or step == total:
            acc = test_accuracy()
            history["step"].append(step)
            history["train_loss"].append(float(np.mean(losses)))
            history["test_acc"].append(acc)
            elapsed = time.perf_counter() - start
            print(
                f"  step {step:>5}/{total}  train loss {np.mean(losses):.3f}  test acc "
                f"{acc:5.1%}  {elapsed:6.1f} s  {step * bs / elapsed:6.0f} images/s"
            )
            losses = []
        if time.perf_counter() - start > budget:
            break
    if time.perf_counter() - start > budget:
        print(f"time budget of {budget:g} s used up after {step} steps")
        break
if not history["step"]:  # stopped before the first evaluation
    history["step"].append(step)
    history["train_loss"].append(float(np.mean(losses)))
    history["test_acc"].append(test_accuracy())
print(f"final test accuracy {history['test_acc'][-1]:.1%} on {len(test_x)} test images")

# %% [markdown]
# ## 4. The pictures
# Time per step on a log scale (each bar says how many images per second), and the GPU run's
# curves.

# %%
fig, ax = plt.subplots(figsize=(9, 4.8))
names = [f"{'GPU' if d == 'cuda' else 'CPU'}\nwidth {w:g}" for d, w in timings]
values = list(timings.values())
bars = ax.bar(names, values, color=["#7f7f7f" if d == "cpu" else "#2ca02c" for d, _ in timings])
for bar, s in zip(bars, values):
    ax.text(
        bar.get_x() + bar.get_width() / 2,
        s,
        f"{s:.3g} s\n{batch / s:.0f} img/s",
        ha="center",
        va="bottom",
        fontsize=9,
    )
ax.set_yscale("log")
ax.set(
    ylabel="seconds per training step (log scale)",
    ylim=(min(values) / 3, max(values) * 8),
    title=f"GoogLeNet-CIFAR training step, batch {batch}: CPU vs {props['name'].decode()}",
)
ax.grid(axis="y", alpha=0.3)
save(fig, out / "16_cpu_vs_gpu.png")

shown(
    viz.plot_curves(
        history,
        out / "16_gpu_curves.png",
        x_key="step",
        title=f"GoogLeNet-CIFAR width {width:g} trained on the GPU ({budget:g} s budget)",
    )
)

# %% [markdown]
# ## Exercise
# Each training batch crosses from the host to the GPU once: 128 CIFAR images as uint8
# (3x32x32 each) and their 128 labels as int64. How many bytes is that? Set `my_bytes` and run
# the check, which builds arrays of those shapes and dtypes and adds up their sizes.

# %%
my_bytes = None  # exercise: an integer


report("exercise", check_batch_bytes(my_bytes))
