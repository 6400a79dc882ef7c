# %% [markdown]
"""Lesson 17: the same code in PyTorch.

What it teaches: minidl uses PyTorch's names on purpose, so what you learned here carries over.
We write the CIFAR GoogLeNet's building blocks in PyTorch (about forty lines, the same structure
as ``googlenet.py``), load minidl's weights into it by their state-dict keys (the keys are the
same), and run one training step of each, side by side: forward, cross-entropy, backward, SGD
with momentum. In float64 the two give the same loss, the same gradient for every parameter and
the same weights after the step.

Needs PyTorch (``pip install torch``, CPU is enough); without it the lesson says so and stops.
Run it: ``python examples/17_same_code_in_pytorch.py``. Picture: ``examples/output/17_*.png``.
"""

# %% [markdown]
# ## Set-up, and is PyTorch installed?

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_eval_prediction, check_paper_block, report
from _lesson import parse_args, save, stop_here

import minidl as md
import minidl.functional as F
from googlenet import INCEPTION_CHANNELS, googlenet_cifar, scale_channels
from minidl import optim

args = parse_args(__doc__.splitlines()[0])
out = args.output
try:
    import torch
except ImportError:
    torch = None
if torch is None:
    stop_here("SKIPPED: this lesson compares minidl with PyTorch, which is not installed here "
              "(pip install torch; the CPU build is enough).")  # fmt: skip
from torch import nn as tnn  # noqa: E402
from torch.nn import functional as TF  # noqa: E402

print(f"PyTorch {torch.__version__}")
md.nn.init.manual_seed(0)
# Each cell that draws random numbers makes its own generator (np.random.default_rng(n)):
# run a cell again and it prints the same numbers.

# %% [markdown]
# ## 1. The model in PyTorch
# The same blocks as `googlenet.py`, written with `torch.nn`: conv (no bias) + batch norm
# (eps 0.001) + ReLU, the Inception module's four branches and the CIFAR network. The attribute
# names are the same as minidl's, so the state-dict keys (`inception3a.branch2.1.conv.weight`)
# are the same too. Width 1/8 and no dropout, so that both networks compute exactly the same
# thing (dropout's random masks would differ).


# %%
class TorchConvBlock(tnn.Module):
    def __init__(self, cin, cout, k, padding=0):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, k, padding=padding, bias=False)
        self.bn = tnn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return TF.relu(self.bn(self.conv(x)))


class TorchInception(tnn.Module):
    def __init__(self, cin, c1, r3, c3, r5, c5, pp):
        super().__init__()
        self.branch1 = TorchConvBlock(cin, c1, 1)
        self.branch2 = tnn.Sequential(TorchConvBlock(cin, r3, 1), TorchConvBlock(r3, c3, 3, 1))
        self.branch3 = tnn.Sequential(TorchConvBlock(cin, r5, 1), TorchConvBlock(r5, c5, 3, 1))
        self.branch4 = tnn.Sequential(
            tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), TorchConvBlock(cin, pp, 1)
        )

    def forward(self, x):
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)


class TorchGoogLeNetCIFAR(tnn.Module):
    def __init__(self, width, num_classes=10):
        super().__init__()
        c = lambda n: scale_channels(n, width)  # noqa: E731  (googlenet.py's rounding)
        self.conv1 = TorchConvBlock(3, c(192), 3, 1)
        cin = c(192)
        for name, (_, *plan) in INCEPTION_CHANNELS.items():
            block = TorchInception(cin, *(c(n) for n in plan))
            setattr(self, f"inception{name}", block)
            cin = sum(c(n) for n in (plan[0], plan[2], plan[4], plan[5]))
        self.maxpool3 = tnn.MaxPool2d(3, stride=2, padding=1)
        self.maxpool4 = tnn.MaxPool2d(3, stride=2, padding=1)
        self.fc = tnn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.conv1(x)  # N x 24 x 32 x 32 at width 1/8
        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)  # N x 60 x 16 x 16
        for name in ("4a", "4b", "4c", "4d", "4e"):
            x = getattr(self, f"inception{name}")(x)
        x = self.maxpool4(x)  # N x 104 x 8 x 8
        x = self.inception5b(self.inception5a(x))
        return self.fc(TF.adaptive_avg_pool2d(x, 1).flatten(1))  # N x 10


# %% [markdown]
# ## 2. The same weights in both
# Build minidl's model, copy every array of its state dict into the PyTorch model by key, and
# check that the key sets agree.

# %%
width = 0.125
ours = googlenet_cifar(width=width, kernel5=3, dropout=0.0).double()
theirs = TorchGoogLeNetCIFAR(width).double()
state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in ours.state_dict().items()}
theirs.load_state_dict(state)
assert set(state) == set(theirs.state_dict()), set(state) ^ set(theirs.state_dict())
print(
    f"{len(state)} state-dict entries, identical keys; {ours.num_parameters():,} parameters in "
    f"minidl, {sum(p.numel() for p in theirs.parameters()):,} in PyTorch"
)
assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())

# %% [markdown]
# ## 3. One training step, side by side
# Here are the two steps. Read them line by line: only the module names differ
# (`md` / `torch`, and PyTorch calls the tensor constructor `torch.tensor` too).


# %%
def minidl_step(model, opt, images, labels):
    model.train()
    x, y = md.tensor(images), md.tensor(labels)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def torch_step(model, opt, images, labels):
    model.train()
    x, y = torch.tensor(images), torch.tensor(labels)
    loss = TF.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


left = inspect.getsource(minidl_step).splitlines()
right = inspect.getsource(torch_step).splitlines()
assert len(left) == len(right)
print(f"{'minidl':<52}| PyTorch")
for a, b in zip(left, right):
    print(f"{a:<52}| {b}")

# %% [markdown]
# Run both on the same batch of 8 images, each with SGD (learning rate 0.1, momentum 0.9,
# weight decay 5e-4), and compare: the loss, every parameter's gradient, and every parameter
# after the step.

# %%
rng = np.random.default_rng(10)
# Both start from section 2's weights: the step below changes them, and a second run of this
# cell must not step on from where the first one ended.
ours.load_state_dict({k: np.array(v.numpy()) for k, v in state.items()})
theirs.load_state_dict(state)
images = rng.standard_normal((8, 3, 32, 32))
labels = rng.integers(0, 10, 8)
opt_ours = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
loss_ours = minidl_step(ours, opt_ours, images, labels)
loss_theirs = torch_step(theirs, opt_theirs, images, labels)
print(f"loss: minidl {loss_ours:.12f}, PyTorch {loss_theirs:.12f}")
assert abs(loss_ours - loss_theirs) < 1e-10

mine = dict(ours.named_parameters())
grad_err, weight_err = {}, {}
for name, p in theirs.named_parameters():
    scale = p.grad.abs().max().item() or 1.0
    grad_err[name] = np.abs(mine[name].grad.numpy() - p.grad.numpy()).max() / scale
    weight_err[name] = np.abs(mine[name].numpy() - p.detach().numpy()).max()
worst = max(grad_err, key=grad_err.get)
print(
    f"gradients: the largest relative difference over {len(grad_err)} parameters is "
    f"{grad_err[worst]:.1e} ({worst})"
)
print(f"weights after the step: the largest difference is {max(weight_err.values()):.1e}")
assert max(grad_err.values()) < 1e-8 and max(weight_err.values()) < 1e-10

# %% [markdown]
# The names that carried over: the same calls in both, but for two of NumPy's words.

# %%
pairs = [
    ("md.tensor(a)", "torch.tensor(a)"),
    ("md.no_grad()", "torch.no_grad()"),
    ("md.concat(ts, axis=1)", "torch.cat(ts, dim=1)"),
    ("minidl.nn.Conv2d / BatchNorm2d / Linear", "torch.nn.Conv2d / BatchNorm2d / Linear"),
    ("minidl.functional.cross_entropy", "torch.nn.functional.cross_entropy"),
    ("minidl.optim.SGD(params, lr, momentum)", "torch.optim.SGD(params, lr, momentum)"),
    ("model.state_dict() keys", "model.state_dict() keys (the same)"),
    ("model.train() / model.eval()", "model.train() / model.eval()"),
]
for a, b in pairs:
    print(f"  {a:<42} {b}")
print("the renames: minidl keeps NumPy's words concat and axis=, PyTorch says cat and dim=")

# %% [markdown]
# The picture: every parameter's gradient in minidl against PyTorch's (they lie on the diagonal),
# and the relative difference per parameter tensor.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
gm = np.concatenate([mine[n].grad.numpy().ravel() for n in grad_err])
gt = np.concatenate([p.grad.numpy().ravel() for _, p in theirs.named_parameters()])
lim = np.abs(gt).max() * 1.05
ax1.plot([-lim, lim], [-lim, lim], color="gray", lw=1)
ax1.scatter(gt, gm, s=3, alpha=0.5)
ax1.set_xlim(-lim, lim)
ax1.set_ylim(-lim, lim)
ax1.set(xlabel="PyTorch gradient", ylabel="minidl gradient")
ax1.set_title(f"All {gm.size:,} parameter gradients of one training step")
ax1.grid(alpha=0.3)
ax2.semilogy(np.maximum(list(grad_err.values()), 1e-18), ".", ms=5)
ax2.axhline(1e-8, color="#c00000", ls="--", label="tolerance 1e-8")
ax2.set(
    xlabel="parameter tensor (in state-dict order)",
    ylabel="max |minidl - PyTorch| / max |PyTorch|",
    title="Relative difference per parameter tensor (float64)",
)
ax2.grid(alpha=0.3)
ax2.legend()
fig.suptitle(f"GoogLeNet-CIFAR width {width:g}: one SGD step in minidl and in PyTorch")
fig.tight_layout()
save(fig, out / "17_minidl_vs_pytorch.png")

# %% [markdown]
# ## Exercises
# 1. Evaluation mode: predict whether the two models still agree after `ours.eval()` and
#    `theirs.eval()` (batch norm now uses the running statistics, updated by the step above).
#    Set `my_prediction` to True or False and run the check.
# 2. The paper's variant (`variant="paper"` in googlenet.py) is built from another unit than the
#    CIFAR model's. Read `ConvBlock` in googlenet.py (what does `bn_eps=None` change?) and write
#    that unit in PyTorch as `TorchPaperConvBlock` below, with the same attribute names; the
#    check copies a minidl block's weights into yours and compares the outputs.

# %%
my_prediction = None  # exercise 1: True or False


ours.eval()
theirs.eval()
with md.no_grad(), torch.no_grad():
    agree = np.allclose(
        ours(md.tensor(images)).numpy(), theirs(torch.tensor(images)).numpy(), rtol=1e-8, atol=1e-10
    )
report("exercise 1", check_eval_prediction(my_prediction, bool(agree)))


class TorchPaperConvBlock(tnn.Module):
    """Exercise 2: the paper variant's unit in PyTorch, as minidl's ConvBlock(bn_eps=None)."""

    def __init__(self, cin, cout, k, padding=0):
        super().__init__()
        raise NotImplementedError("exercise 2: your code here")

    def forward(self, x):
        raise NotImplementedError("exercise 2: your code here")


report("exercise 2", check_paper_block(TorchPaperConvBlock))
