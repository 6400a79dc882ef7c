"""The command line of ``googlenet.py``: train the CIFAR-10 model, evaluate a checkpoint, print
the paper's Table 1, convert torchvision's weights. Run it as ``python googlenet.py COMMAND``.

The training loop is the library's (``minidl.train.fit``); what is GoogLeNet's here is the
recipe (``TRAIN_DEFAULTS``), the loss with the auxiliary heads, and what a checkpoint records to
rebuild its model (``model_config``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import sys
import time
from collections.abc import Iterator
from typing import Any

if "numpy" not in sys.modules:  # run as the program (`python googlenet.py ...`), not imported
    # OpenBLAS's worker threads spin for a while after each matrix product, taking the cores
    # from the element-wise passes (batch norm, pooling, im2col) that run between products:
    # ~10% of a CPU training step on 2 cores. A short spin must be asked for before NumPy loads
    # OpenBLAS, hence here, before the imports below; never by importing the model.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import minidl as md
import minidl.functional as F
from googlenet import VARIANTS, GoogLeNet, GoogLeNetOutputs, googlenet_cifar
from googlenet_table import summary
from minidl.backend import keep_freed_memory
from minidl.train import Interrupted, NonFiniteLoss, RunFiles, RunPlan, checkpoint
from minidl.train.evaluation import TTA_SHIFTS, views_per_image


# ---------------------------------------------------------------------------- checkpoints
class CLIError(Exception):
    """A user error the command line reports in one line (exit status 2), without a traceback."""


def model_config(model: GoogLeNet) -> dict[str, Any]:
    """What it takes to rebuild ``model``: stored in every checkpoint as ``"model_config"``."""
    return {
        "variant": model.variant,
        "width": model.width,
        "kernel5": model.kernel5,
        "num_classes": model.num_classes,
        "aux_logits": model.aux_logits,
        "transform_input": model.transform_input,
        "dropout": model.dropout.p,
    }


def build_model(config: dict[str, Any]) -> GoogLeNet:
    """The (untrained) model a ``model_config`` describes."""
    return GoogLeNet(
        config["num_classes"],
        config["variant"],
        aux_logits=config["aux_logits"],
        transform_input=config.get("transform_input", False),
        width=config["width"],
        kernel5=config["kernel5"],
        dropout=config.get("dropout"),
    )


def read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint written by ``train`` or ``import-torchvision``, checked."""
    try:
        ckpt = checkpoint.read_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    if "model_config" not in ckpt:
        raise CLIError(
            f"{path!r} is not a googlenet.py checkpoint (no model_config/model entries); "
            "it may be a bare state dict"
        )
    return ckpt


def weight_average(model: GoogLeNet, decay: float) -> md.optim.swa_utils.AveragedModel | None:
    """``train --ema DECAY``'s average of the weights (None for 0): batch-norm statistics
    averaged too, the decay warmed up so a short run's average is not mostly its first
    weights (``get_ema_multi_avg_fn``'s ``warmup``)."""
    if not decay:
        return None
    average = md.optim.swa_utils.get_ema_multi_avg_fn(decay, warmup=True)
    return md.optim.swa_utils.AveragedModel(model, average, use_buffers=True)


def load_model(path: str, device: str = "cpu", averaged: bool = False) -> GoogLeNet:
    """A model with the weights of a checkpoint or an imported torchvision ``.npz``; with
    ``averaged``, the running average of the weights the checkpoint keeps (``train --ema``)."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["model_config"])
    weights = ckpt["model"]
    if averaged:
        if "averaged" not in ckpt:
            raise CLIError(
                f"checkpoint {path!r} holds no average of the weights (train with --ema)"
            )
        entries = ckpt["averaged"].items()
        weights = {k.removeprefix("module."): v for k, v in entries if k.startswith("module.")}
    try:
        model.load_state_dict(weights)
    except ValueError as e:
        raise CLIError(f"checkpoint {path!r} does not fit its own model_config: {e}") from None
    return model.to(device)


def check_compatible(config: dict[str, Any], asked: dict[str, Any], path: str) -> None:
    """Raise a CLIError naming both sides when options given on the command line contradict
    the model a checkpoint holds (None in ``asked`` means "not given")."""
    clashes = [
        f"{key} {config.get(key)!r} (checkpoint) vs {value!r} (command line)"
        for key, value in asked.items()
        if value is not None and config.get(key) != value
    ]
    if clashes:
        raise CLIError(
            f"checkpoint {path!r} holds a different model: " + "; ".join(clashes) + ". Drop those "
            "options to use the checkpoint's, or start a new run in another --out folder"
        )


def import_torchvision(pth_path: str, out_path: str, transform_input: bool = True) -> GoogLeNet:
    """Convert torchvision GoogLeNet weights (a ``.pth`` state dict) to a minidl ``.npz``.

    No PyTorch needed (``minidl.pth``). The model is rebuilt as ``variant="torchvision"``, with
    aux heads if the file has them and the class count of its ``fc`` layer, and loaded strictly,
    so any missing, unexpected or wrongly shaped key is reported. ``transform_input``: the
    published ImageNet weights expect it (inputs normalised with ImageNet's mean and std).
    """
    from minidl.pth import load_state_dict

    try:
        state = load_state_dict(pth_path)
    except FileNotFoundError:
        raise CLIError(f"weights file {pth_path!r} does not exist") from None
    except (ValueError, pickle.UnpicklingError) as e:
        raise CLIError(f"cannot read {pth_path!r}: {e}") from None
    if "fc.weight" not in state:
        raise CLIError(f"{pth_path!r} has no fc.weight: not a torchvision GoogLeNet state dict")
    num_classes = int(state["fc.weight"].shape[0])
    aux = any(k.startswith("aux1.") for k in state)
    model = GoogLeNet(num_classes, "torchvision", aux_logits=aux, transform_input=transform_input)
    try:
        model.load_state_dict(state)
    except ValueError as e:
        raise CLIError(f"{pth_path!r} does not match torchvision's GoogLeNet:\n{e}") from None
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise CLIError(f"output folder {folder!r} does not exist")
    md.save({"model_config": model_config(model), "model": model.state_dict()}, out_path)
    return model


# ---------------------------------------------------------------------------- training
DEFAULT_DATA = os.path.join(os.path.expanduser("~"), ".cache", "minidl", "cifar10")


def _load_cifar(data: str | None, train: bool) -> Any:
    """CIFAR-10 from ``--data`` (must exist), or from the cache folder (downloaded if missing)."""
    from minidl.data import CIFAR10

    if data is not None and not os.path.exists(data):
        raise CLIError(
            f"data folder {data!r} does not exist; point --data at a folder holding "
            "cifar-10-batches-py/ or cifar-10-python.tar.gz, or leave --data out to download "
            f"CIFAR-10 into {DEFAULT_DATA}"
        )
    root = data if data is not None else DEFAULT_DATA
    try:
        return CIFAR10(root, train=train, download=data is None)
    except OSError as e:
        if data is None and not isinstance(e, FileNotFoundError):
            raise CLIError(
                f"cannot download CIFAR-10 into {root!r}: {e}. Without internet, fetch "
                f"cifar-10-python.tar.gz elsewhere and pass --data FOLDER (the folder holding it)"
            ) from None
        raise CLIError(f"cannot load CIFAR-10 from {root!r}: {e}") from None
    except ValueError as e:
        raise CLIError(f"cannot load CIFAR-10 from {root!r}: {e}") from None


def _test_subset(test_set: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed subset of ``n`` test images (the same in every run, whatever --seed), as a pair."""
    keep = np.sort(np.random.default_rng(0).permutation(len(test_set.data))[:n])
    return test_set.data[keep], test_set.targets[keep]


def _device(name: str) -> str:
    try:
        device = md.backend.check_device(name)
        md.backend.module_for(device)  # imports CuPy and finds a GPU for "cuda"
    except (ValueError, TypeError, RuntimeError) as e:
        raise CLIError(f"--device: {e}") from None
    return device


class DeviceCounts:
    """``fit``'s ``on_step`` on the simulated GPU: the synchronisations and kernel launches of
    each training step (from one step's end to the next, the batch's loading included; the first
    step of an epoch, which follows an evaluation, and a step followed by the time budget's test
    batch are left out)."""

    def __init__(self, sim: Any):
        self.sim = sim
        self.syncs: list[int] = []
        self.launches: list[int] = []
        self.last = (sim.stats.syncs, sim.stats.launches)

    def __call__(self, step: Any) -> None:
        now = (self.sim.stats.syncs, self.sim.stats.launches)
        if step.batch > 0 and not step.tested:
            self.syncs.append(now[0] - self.last[0])
            self.launches.append(now[1] - self.last[1])
        self.last = now

    def summary(self) -> str:
        if not self.launches:
            return "simulated GPU: no step between two others to count"
        return (
            f"simulated GPU, per training step ({len(self.launches)} counted): at most "
            f"{max(self.syncs)} synchronisation(s), {int(np.median(self.launches)):,} kernel "
            "launches (median)"
        )


def make_loss(aux_weight: float, smoothing: float) -> Any:
    """The training loss: cross-entropy of the main head, plus ``aux_weight`` times each
    auxiliary head's when the model has them (the paper's 0.3)."""

    def loss(output: Any, y: md.Tensor) -> md.Tensor:
        if isinstance(output, GoogLeNetOutputs):
            total = F.cross_entropy(output.logits, y, label_smoothing=smoothing)
            for aux in (output.aux1, output.aux2):
                total = total + aux_weight * F.cross_entropy(aux, y, label_smoothing=smoothing)
            return total
        return F.cross_entropy(output, y, label_smoothing=smoothing)

    return loss


def _make_schedule(optimizer: Any, args: Any, epochs: int, total_steps: int) -> Any:
    """Per-batch learning-rate schedule: OneCycle (warm-up then cosine down), cosine, or step
    (a tenth of the rate after each third of the ``epochs``)."""
    from minidl import optim

    if args.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]  # --bn-bias-lr: its own
        return optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks if len(peaks) > 1 else args.lr, total_steps=total_steps,
            pct_start=0.25, cycle_momentum=False, div_factor=10.0, final_div_factor=100.0,
        )  # fmt: skip
    if args.schedule == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    steps_per_epoch = max(total_steps // epochs, 1)
    return optim.lr_scheduler.StepLR(
        optimizer, step_size=steps_per_epoch * max(epochs // 3, 1), gamma=0.1
    )


def progressive_resizing(config: dict[str, Any], flip: Any = None) -> tuple[float, Any] | None:
    """``RunPlan``'s ``low_res`` for a run's options: (share, the small crops' transform), or None
    (--low-res 32, a share of 0, or a config without low_res: full size throughout). ``flip``:
    the flip step the full-size transform uses too (``train_flip``)."""
    from minidl.data import cifar10_train_transform

    small = _small_crops(config)
    if small is None:
        return None
    size, share = small
    return share, cifar10_train_transform(config.get("cutout") or 0, size=size, flip=flip)


def train_flip(config: dict[str, Any], images: int) -> Any:
    """The training transforms' flip step for a run's options: None (random flips) or one
    ``AlternatingHorizontalFlip`` over the ``images`` of the training set (--flip alternate)."""
    from minidl.data import AlternatingHorizontalFlip

    if config.get("flip", "random") == "random":  # (a run from before --flip: random)
        return None
    return AlternatingHorizontalFlip(images, seed=config.get("seed") or 0)


WHITENING_IMAGES = 5000  # 4.5 million 3x3 patches: their 27 x 27 covariance is well estimated


def whiten_stem(model: GoogLeNet, train_set: Any, images: int = WHITENING_IMAGES) -> None:
    """--whiten: the stem convolution's filters set to whiten the 3x3 patches of the first
    ``images`` training images, normalised as the network sees them
    (``minidl.nn.init.patch_whitening_``); they train on from there."""
    from minidl.data import cifar10_test_transform

    x = cifar10_test_transform()(train_set.nchw()[:images])
    md.nn.init.patch_whitening_(model.conv1.conv.weight, x)


def optimizer_groups(
    model: GoogLeNet, lr: float, weight_decay: float, freeze_bn_weight: bool, bn_bias_lr: float
) -> list[dict[str, Any]]:
    """SGD's parameter groups: every parameter in one group, unless batch norm's scales are
    frozen (--freeze-bn-weight: they keep their initial 1, ``requires_grad=False``, and leave the
    optimizer) or its biases learn faster (--bn-bias-lr: a second group at ``bn_bias_lr * lr``
    whose weight decay is divided by the factor, so that each step decays them by ``lr *
    weight_decay`` as before; Jordan 2024, airbench). The first group holds everything else."""
    norms = [m for _, m in model.named_modules() if isinstance(m, md.nn.BatchNorm2d) and m.affine]
    if freeze_bn_weight:
        for bn in norms:
            bn.weight.requires_grad = False
    faster = {id(bn.bias) for bn in norms} if bn_bias_lr != 1.0 else set()
    trained = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": [p for p in trained if id(p) not in faster]}]
    if faster:
        groups.append({
            "params": [p for p in trained if id(p) in faster],
            "lr": lr * bn_bias_lr, "weight_decay": weight_decay / bn_bias_lr,
        })  # fmt: skip
    return groups


def _small_crops(config: dict[str, Any]) -> tuple[int, float] | None:
    """(size, share) of a run's small crops, or None when it trains at full size throughout."""
    size, share = config.get("low_res") or 32, config.get("low_res_share") or 0.0
    return None if size >= 32 or share <= 0 else (size, share)


def epochs_with_small_crops(full_size_epochs: int, config: dict[str, Any]) -> int:
    """The epochs that fit the time of ``full_size_epochs`` when progressive resizing trains a
    share of them on small crops, each step costing its pixels' share of a full one."""
    small = _small_crops(config)
    if small is None:
        return full_size_epochs
    size, share = small
    cost = (size / 32) ** 2
    return max(1, int(full_size_epochs / (1 - share * (1 - cost))))


TRAIN_DEFAULTS: dict[str, Any] = {
    "width": 0.25,
    "kernel5": 3,  # faster than 5 in NumPy at width 1/4 (records/recipe.md); --kernel5 5: paper
    "aux": False,
    "epochs": 0,  # 0: steered by --time-budget-min (minidl.train.budget), as many steps as fit
    "time_budget_min": 88.0,  # the run ends within it: the whole process within 90 minutes
    "batch_size": 128,
    "lr": 0.1,
    "schedule": "onecycle",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "aux_weight": 0.3,
    "label_smoothing": 0.1,  # Szegedy et al. 2016; records/recipe.md, "Label smoothing 0.1"
    "cutout": 0,
    "flip": "random",  # or "alternate": each image mirrored on every other epoch (Jordan 2024)
    # the stem convolution initialised to whiten the images' patches: +0.77 to +0.92 points
    # (six views) in three runs at 4 epochs (records/recipe.md, "The stem initialised ...")
    "whiten": True,
    # batch norm's scales frozen at 1, and its biases' learning rate (a factor of --lr): off, as
    # frozen scales with 16x biases gained +0.49 and +0.04 in two pairs (records/recipe.md)
    "freeze_bn_weight": False,
    "bn_bias_lr": 1.0,
    # progressive resizing: 24x24 crops for the first 70% of the schedule, the full 32x32 images
    # for the last 30% (docs/training.md, "Progressive resizing: small crops first")
    "low_res": 24,
    "low_res_share": 0.7,
    "seed": 0,
    "eval_images": 2000,  # a fixed subset after each epoch; the whole test set at the end
    "tta": True,  # the final test pass averages six views: as is, shifted, each mirrored
    "ema": 0.0,  # 0: off; else the decay a step of an average of the weights kept beside them
}


# Options a resume cannot change: they define the run the checkpoint continues. --epochs may grow
# (the schedule is re-planned); --data, --out, --device and --stop-after-epochs are the session's.
FIXED_ON_RESUME = tuple(k for k in TRAIN_DEFAULTS if k != "epochs")
RUN_FILES = ("last.npz", "best.npz", "metrics.json", "metrics.csv", "curves.png")
DEFAULT_OUT = os.path.join("runs", "googlenet_cifar")
# the last row's result, best first (final_test_flip_acc: a checkpoint whose final pass was the
# mirror pair, which resumed runs keep)
FINAL_KEYS = ("final_test_tta_acc", "final_test_flip_acc", "final_test_acc", "test_acc")


def _resume_config(args: Any, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The run's options from its checkpoint; options given now must agree, except --epochs,
    which may extend the run."""
    if "train_config" not in ckpt:
        raise CLIError(f"{args.resume!r} holds weights only (no training state) to resume")
    config = dict(ckpt["train_config"])
    clashes = [
        f"--{key.replace('_', '-')} {getattr(args, key)!r} (the run has {config.get(key)!r})"
        for key in FIXED_ON_RESUME
        if getattr(args, key) is not None and getattr(args, key) != config.get(key)
    ]
    if args.epochs is not None and config["epochs"] == 0:
        clashes.append(
            f"--epochs {args.epochs} (the run is steered by its time budget of "
            f"{config['time_budget_min']:g} minutes: it has no fixed epoch count)"
        )
    if clashes:
        raise CLIError(
            "cannot change on --resume: " + "; ".join(clashes) + ". These define the run the "
            "checkpoint continues; drop them (--epochs may grow), or start a new run with "
            "another --out"
        )
    done = int(ckpt["epoch"]) + (int(ckpt["batch"]) > 0)
    if args.epochs is not None and config["epochs"] > 0:
        if args.epochs < max(done, 1):
            raise CLIError(
                f"--epochs {args.epochs}: the run has already trained {ckpt['epoch']} epochs"
                + (f" and {ckpt['batch']} batches" if ckpt["batch"] else "")
                + f"; give at least {max(done, 1)}"
            )
        config["epochs"] = args.epochs
    return config


@contextlib.contextmanager
def _claim_out(args: Any) -> Iterator[None]:
    """Make the --out folder and lock it for the run, before any data is loaded: a folder that
    cannot be written fails now. A folder holding another run is refused unless --overwrite (its
    files are then removed) or it is the folder of the run being resumed."""
    out = os.path.abspath(args.out)
    own = args.resume is not None and os.path.dirname(os.path.abspath(args.resume)) == out
    with contextlib.ExitStack() as stack:
        try:
            os.makedirs(out, exist_ok=True)
            stack.enter_context(checkpoint.run_lock(out))
        except checkpoint.RunLocked as e:
            raise CLIError(str(e)) from None
        except OSError as e:
            raise CLIError(f"--out {args.out!r} cannot be written: {e.strerror or e}") from None
        held = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
        if held and not own:
            if not args.overwrite:
                raise CLIError(
                    f"--out {args.out!r} holds a run ({', '.join(held)}). Continue it with "
                    f"--resume {os.path.join(args.out, 'last.npz')}, replace it with --overwrite, "
                    "or choose another --out"
                )
            for name in held:
                os.remove(os.path.join(out, name))
        yield


def train(args: Any) -> float:
    """The ``train`` command: returns the final test accuracy."""
    run_start = time.perf_counter()  # wall time counts loading the data and calibrating too
    device = _device(args.device)
    ckpt = None
    if args.resume:
        ckpt = read_checkpoint(args.resume)
        config = _resume_config(args, ckpt)
        args.data = args.data if args.data is not None else config.get("data")
        args.out = args.out or os.path.dirname(os.path.abspath(args.resume))
    else:
        config = {k: (getattr(args, k) if getattr(args, k) is not None else v)
                  for k, v in TRAIN_DEFAULTS.items()}  # fmt: skip
        config["data"] = None if args.data is None else os.path.abspath(args.data)
        args.out = args.out or DEFAULT_OUT
    for key, value in config.items():
        if key != "data":
            setattr(args, key, value)
    with _claim_out(args):
        return _train(args, device, config, ckpt, run_start)


def _train(args: Any, device: str, config: dict, ckpt: dict | None, run_start: float) -> float:
    from minidl import optim
    from minidl.data import DataLoader, cifar10_test_transform, cifar10_train_transform
    from minidl.train import estimate_epochs, fit

    train_set = _load_cifar(args.data, train=True)
    test_set = _load_cifar(args.data, train=False)
    md.nn.init.manual_seed(args.seed)
    np.random.seed(args.seed)  # dropout masks come from the array module's global generator
    if device == "cuda":
        # CuPy's generator is seeded too, but not checkpointed: a resumed GPU run redraws masks
        md.backend.module_for(device).random.seed(args.seed)
    model = googlenet_cifar(
        args.width, len(train_set.classes), aux_logits=args.aux, kernel5=args.kernel5
    )
    if config.get("whiten") and ckpt is None:  # (a resumed run has its weights)
        whiten_stem(model, train_set)
    model.fuse().to(device)  # the same values with fewer passes over memory
    if ckpt is not None:
        check_compatible(ckpt["model_config"], model_config(model), args.resume)
    # (a run from before --freeze-bn-weight and --bn-bias-lr: one group of all parameters)
    groups = optimizer_groups(
        model, args.lr, args.weight_decay,
        config.get("freeze_bn_weight", False), config.get("bn_bias_lr", 1.0),
    )  # fmt: skip
    optimizer = optim.SGD(
        groups, lr=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay,
    )  # fmt: skip
    flip = train_flip(config, len(train_set))
    loader = DataLoader(
        train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
        transform=cifar10_train_transform(args.cutout, flip=flip), device=device,
    )  # fmt: skip
    test_loader = DataLoader(test_set, 500, transform=cifar10_test_transform(), device=device)
    epoch_test_loader = test_loader  # (a config without eval_images evaluates the whole set)
    if 0 < config.get("eval_images", 0) < len(test_set):
        epoch_test_loader = DataLoader(
            _test_subset(test_set, config["eval_images"]), 500,
            transform=cifar10_test_transform(), device=device,
        )  # fmt: skip
    # the whole test set once more at the end: after a subset, or for test-time augmentation
    tta = bool(config.get("tta"))
    final_loader = test_loader if epoch_test_loader is not test_loader or tta else None
    views = views_per_image(TTA_SHIFTS if tta else ())
    final_images = 0 if final_loader is None else len(test_set) * views
    if len(loader) == 0:
        raise CLIError(
            f"--batch-size {args.batch_size} is larger than the {len(train_set)} training images"
        )
    loss = make_loss(args.aux_weight, args.label_smoothing)
    budgeted = args.epochs == 0
    if budgeted and ckpt is None:  # a first plan for the schedule, re-planned after every step
        budget_s = args.time_budget_min * 60 - (time.perf_counter() - run_start)
        full_size = estimate_epochs(
            model, make_loss(args.aux_weight, 0.0), loader, budget_s,
            len(epoch_test_loader.images), final_images=final_images,
        )  # fmt: skip
        config["planned_epochs"] = planned = epochs_with_small_crops(full_size, config)
        print(
            f"about {planned} epoch{'s' if planned != 1 else ''} fit the time budget of "
            f"{args.time_budget_min:g} minutes (re-planned after every step)"
        )
    epochs = config["planned_epochs"] if budgeted else args.epochs
    schedule = _make_schedule(optimizer, args, epochs, epochs * len(loader))
    print(
        f"GoogLeNet CIFAR width {args.width:g} ('5x5' kernel {args.kernel5}), "
        f"{model.num_parameters():,} parameters, "
        + (f"{args.time_budget_min:g} minutes" if budgeted else f"{epochs} epochs")
        + f" of {len(loader)} batches of {args.batch_size} on {device}; writing to {args.out}"
    )
    extra = {"model_config": model_config(model), "train_config": config}  # in every checkpoint
    files = RunFiles(out=args.out, checkpoint_extra=extra, resume=ckpt)
    averaged = weight_average(model, config.get("ema", 0.0))  # (a run from before --ema: none)
    plan = RunPlan(
        time_budget_s=args.time_budget_min * 60 if budgeted else None,
        low_res=progressive_resizing(config, flip),
        final_test_loader=final_loader,
        final_tta=tta,
        stop_after_epochs=args.stop_after_epochs,
        start_time=run_start,  # the wall time counts loading the data and calibrating
        averaged=averaged,
    )
    xp = md.backend.module_for(device)
    counts = DeviceCounts(xp) if md.backend.is_simulated(xp) else None
    result = fit(
        model, loss, loader, optimizer, epochs, schedule=schedule, test_loader=epoch_test_loader,
        files=files, plan=plan, on_step=counts,
    )  # fmt: skip
    if counts is not None:
        print(counts.summary())
    last = result.rows[-1] if result.rows else {}
    final = next((last[k] for k in FINAL_KEYS if k in last), 0.0)
    epochs_done = last.get("epoch", 0)
    if not result.finished:
        print(f"stopped after {epochs_done} epochs; continue with --resume {result.checkpoint}")
        return final
    how = " on the whole test set" if "final_test_acc" in last else ""
    if final_loader is not None and "final_test_acc" not in last:  # the budget left it out
        how = f" on {last['test_images']:,} test images"
        command = f"python googlenet.py eval --checkpoint {result.checkpoint}"
        command += (f" --data {args.data}" if args.data else "") + (" --tta" if tta else "")
        print(f"the whole test set: {command}")
    if "final_test_tta_acc" in last:
        how += f" with test-time augmentation ({last['final_test_tta_views']} views averaged; "
        how += f"plain {last['final_test_acc']:.2%})"
    elif "final_test_flip_acc" in last:
        how += f" with flips averaged (plain {last['final_test_acc']:.2%})"
    print(
        f"final test accuracy {final:.2%}{how} after {epochs_done:g} epochs, wall time "
        f"{result.elapsed_s / 60:.1f} min (best after an epoch {result.best_acc:.2%})"
    )
    return final


# ---------------------------------------------------------------------------- other commands
def evaluate_checkpoint(args: Any) -> float:
    """The ``eval`` command: test accuracy, per-class accuracy, confusion matrix (text + PNG)."""
    from minidl.data import DataLoader, cifar10_test_transform
    from minidl.train.evaluation import evaluate, evaluate_tta
    from minidl.train.metrics import confusion_matrix, format_confusion
    from minidl.viz import plot_confusion

    device = _device(args.device)
    ckpt = read_checkpoint(args.checkpoint)
    config = ckpt["model_config"]
    check_compatible(config, {"variant": args.variant, "width": args.width}, args.checkpoint)
    if config["variant"] != "cifar":
        raise CLIError(
            f"checkpoint {args.checkpoint!r} holds a {config['variant']!r} GoogLeNet (ImageNet); "
            "eval measures CIFAR-10 models (variant 'cifar')"
        )
    test_set = _load_cifar(args.data, train=False)
    if config["num_classes"] != len(test_set.classes):
        raise CLIError(
            f"checkpoint {args.checkpoint!r} classifies {config['num_classes']} classes; "
            f"CIFAR-10 has {len(test_set.classes)}"
        )
    model = load_model(args.checkpoint, device, averaged=args.averaged).fuse()
    loader = DataLoader(
        test_set, args.batch_size, transform=cifar10_test_transform(), device=device
    )
    views = ""
    if args.tta:
        plain, (loss, acc, targets, predictions) = evaluate_tta(model, loader)
        views = f", {views_per_image(TTA_SHIFTS)} views averaged (plain {plain.accuracy:.2%})"
    else:
        loss, acc, targets, predictions = evaluate(model, loader)
    matrix = confusion_matrix(targets, predictions, len(test_set.classes))
    print(
        f"checkpoint {args.checkpoint}: width {config['width']:g}, epoch {ckpt.get('epoch', '?')}"
        + (", the average of its weights" if args.averaged else "")
    )
    print(
        f"test accuracy {acc:.2%} ({int(matrix.trace())}/{len(targets)}), test loss {loss:.4f}"
        + views
    )
    print("per-class accuracy:")
    for name, row, i in zip(test_set.classes, matrix, range(len(matrix))):
        print(f"  {name:<11} {row[i] / max(row.sum(), 1):.2%}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_confusion(matrix, test_set.classes))
    png = args.confusion or os.path.splitext(args.checkpoint)[0] + "_confusion.png"
    plot_confusion(matrix, test_set.classes, png)
    print(f"confusion matrix plot: {png}")
    return acc


def _summary_command(args: Any) -> None:
    if args.variant == "cifar":
        model = googlenet_cifar(
            args.width or 1.0,
            args.num_classes or 10,
            aux_logits=args.aux,
            kernel5=args.kernel5 or TRAIN_DEFAULTS["kernel5"],
        )
        size = args.input_size or 32
    else:
        if args.width not in (None, 1.0):
            raise CLIError(f"--width applies to --variant cifar only, got {args.width}")
        model = GoogLeNet(
            args.num_classes or 1000, args.variant, aux_logits=args.aux, kernel5=args.kernel5
        )
        size = args.input_size or 224
    print(summary(model, size))


def _in(kind: type, low: float, high: float, *, open_low: bool = False, open_high: bool = False):
    """An argparse type: a ``kind`` (int or float) in [low, high], ``open_low``/``open_high``
    leaving an end out; NaN and infinities never pass. argparse names the option in the error."""
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a{'n integer' if kind is int else ' number'} in {interval}, got {text!r}"
            ) from None
        above = value > low if open_low else value >= low
        below = value < high if open_high else value <= high
        if not (above and below):  # (False for NaN)
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} in {interval}"
    return parse


WIDTH = _in(float, 0, 8, open_low=True)  # channel multiplier: 1 is the paper's network
BATCH = _in(int, 1, 65536)
PROBABILITY = _in(float, 0, 1, open_high=True)  # [0, 1): label smoothing, momentum


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="googlenet.py",
        description="GoogLeNet (Inception v1) in minidl: train on CIFAR-10, evaluate, summarise, "
        "import torchvision weights.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    d = TRAIN_DEFAULTS

    t = commands.add_parser(
        "train",
        help="train the CIFAR-10 GoogLeNet",
        description="Train googlenet_cifar on CIFAR-10. Defaults (width 0.25, 3x3 kernel in "
        "the '5x5' branch, SGD with Nesterov momentum, OneCycle schedule, crop+flip "
        "augmentation, label smoothing 0.1, 24x24 crops for the first 70% of the schedule, "
        "the stem initialised to whiten the images' patches) "
        "fit the run into --time-budget-min (88 minutes): "
        "with --epochs left at 0 it ends within the budget with its schedule completed, "
        "re-planned after every step from the measured speed. A 2-core CPU reached 91.8% test "
        "accuracy in 88 minutes "
        "(the whole test set, six views averaged; records/README.md).",
    )
    t.add_argument(
        "--data", help=f"CIFAR-10 folder (default: {DEFAULT_DATA}, downloaded if missing)"
    )
    t.add_argument(
        "--out", help=f"output folder ({DEFAULT_OUT}; with --resume: the checkpoint's folder)"
    )
    t.add_argument(
        "--resume", metavar="CHECKPOINT",
        help="continue the run of a checkpoint (last.npz) where it stopped, with its options",
    )  # fmt: skip
    t.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --out (refused without)"
    )
    t.add_argument("--device", default="cpu", help="cpu or cuda (%(default)s)")
    t.add_argument("--width", type=WIDTH, help=f"channel multiplier ({d['width']})")
    t.add_argument(
        "--kernel5", type=int, choices=(3, 5), help=f"'5x5' branch kernel ({d['kernel5']})"
    )
    t.add_argument("--aux", action=argparse.BooleanOptionalAction, help="auxiliary heads (off)")
    t.add_argument(
        "--epochs", type=_in(int, 0, 100000),
        help="epochs; 0 = steered by the time budget (0); with --resume: more extends the run",
    )  # fmt: skip
    t.add_argument(
        "--time-budget-min", type=_in(float, 0, 1e6, open_low=True),
        help=f"minutes the run takes when --epochs is 0: its schedule ends with them "
        f"({d['time_budget_min']:g})",
    )  # fmt: skip
    t.add_argument("--batch-size", type=BATCH, help=f"({d['batch_size']})")
    t.add_argument(
        "--lr", type=_in(float, 0, 10, open_low=True), help=f"peak learning rate ({d['lr']})"
    )
    t.add_argument("--schedule", choices=("onecycle", "cosine", "step"), help="(onecycle)")
    t.add_argument("--momentum", type=PROBABILITY, help=f"({d['momentum']})")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, help="(on)")
    t.add_argument("--weight-decay", type=_in(float, 0, 1), help=f"({d['weight_decay']})")
    t.add_argument(
        "--aux-weight", type=_in(float, 0, 10), help=f"weight of each aux loss ({d['aux_weight']})"
    )
    t.add_argument("--label-smoothing", type=PROBABILITY, help=f"({d['label_smoothing']})")
    t.add_argument("--cutout", type=_in(int, 0, 32), help="cutout square size, 0 = off (0)")
    t.add_argument(
        "--flip", choices=("random", "alternate"),
        help="horizontal flips: each image at random every epoch, or a random half in the first "
        f"epoch and then each image on every other epoch ({d['flip']})",
    )  # fmt: skip
    t.add_argument(
        "--whiten", action=argparse.BooleanOptionalAction,
        help="initialise the stem convolution from the data: its filters whiten the 3x3 patches "
        f"of {WHITENING_IMAGES:,} training images (on)",
    )  # fmt: skip
    t.add_argument(
        "--freeze-bn-weight", action=argparse.BooleanOptionalAction,
        help="keep batch norm's scales (its weight) at 1: they leave the optimizer (off)",
    )  # fmt: skip
    t.add_argument(
        "--bn-bias-lr", type=_in(float, 0, 1000, open_low=True), metavar="FACTOR",
        help="batch norm's biases learn at FACTOR x the learning rate, with the weight decay "
        f"divided by FACTOR (the same decay per step) ({d['bn_bias_lr']:g})",
    )  # fmt: skip
    t.add_argument(
        "--low-res", type=_in(int, 8, 32), metavar="SIZE",
        help="progressive resizing: the first --low-res-share of the schedule trains on random "
        f"SIZE x SIZE crops (faster steps), the rest on 32x32; 32 = off ({d['low_res']})",
    )  # fmt: skip
    t.add_argument(
        "--low-res-share", type=_in(float, 0, 1),
        help=f"the schedule's share trained at --low-res ({d['low_res_share']})",
    )  # fmt: skip
    t.add_argument("--seed", type=_in(int, 0, 2**32 - 1), help=f"({d['seed']})")
    t.add_argument(
        "--eval-images", type=_in(int, 0, 10000),
        help=f"test images evaluated after each epoch, a fixed subset; 0 = all "
        f"({d['eval_images']}); the whole test set is evaluated when the run ends",
    )  # fmt: skip
    t.add_argument(
        "--tta", action=argparse.BooleanOptionalAction,
        help="the final test pass averages each image's prediction over "
        f"{views_per_image(TTA_SHIFTS)} views: as is and shifted by one pixel diagonally each "
        "way, each also mirrored (on; the plain accuracy is reported too)",
    )  # fmt: skip
    t.add_argument(
        "--ema", type=PROBABILITY, metavar="DECAY",
        help="keep an exponential moving average of the weights (batch-norm statistics too), "
        "updated every step with this decay (0.999: about the last 1,000 steps; less while "
        "the average is young), evaluated "
        "beside the model after each epoch and saved in the checkpoints (eval --averaged); "
        f"0 = off ({d['ema']:g})",
    )  # fmt: skip
    t.add_argument(
        "--stop-after-epochs", type=_in(int, 1, 100000), metavar="N",
        help="stop after N epochs of this session, leaving last.npz to --resume later",
    )  # fmt: skip

    e = commands.add_parser("eval", help="evaluate a checkpoint on the CIFAR-10 test set")
    e.add_argument("--checkpoint", required=True, help="a checkpoint written by train")
    e.add_argument("--data", help=f"CIFAR-10 folder (default: {DEFAULT_DATA})")
    e.add_argument("--device", default="cpu", help="cpu or cuda (%(default)s)")
    e.add_argument("--batch-size", type=BATCH, default=500)
    e.add_argument(
        "--tta", action="store_true",
        help="average each image's prediction over "
        f"{views_per_image(TTA_SHIFTS)} views (shifted and mirrored), as train's final pass does",
    )  # fmt: skip
    e.add_argument(
        "--averaged", action="store_true",
        help="evaluate the running average of the weights the checkpoint keeps (train --ema)",
    )  # fmt: skip
    e.add_argument("--variant", choices=VARIANTS, help="expected variant (checked)")
    e.add_argument("--width", type=WIDTH, help="expected width (checked)")
    e.add_argument("--confusion", help="confusion matrix PNG (default: next to the checkpoint)")

    s = commands.add_parser("summary", help="print the paper's Table 1 for a variant")
    s.add_argument("--variant", choices=VARIANTS, default="paper")
    s.add_argument("--width", type=WIDTH, help="channel multiplier (cifar only)")
    s.add_argument("--input-size", type=_in(int, 1, 4096), help="224 (ImageNet) or 32 (cifar)")
    s.add_argument(
        "--kernel5", type=int, choices=(3, 5),
        help="'5x5' branch kernel (paper 5, torchvision 3, cifar: train's default 3)",
    )  # fmt: skip
    s.add_argument("--num-classes", type=_in(int, 1, 100000))
    s.add_argument("--aux", action="store_true", help="build the auxiliary heads too")

    i = commands.add_parser(
        "import-torchvision", help="convert torchvision GoogLeNet weights (.pth) to .npz"
    )
    i.add_argument("weights", help="a torchvision googlenet .pth state dict")
    i.add_argument("out", help="the .npz to write")
    i.add_argument(
        "--no-transform-input", dest="transform_input", action="store_false",
        help="the model takes (x - 0.5) / 0.5 inputs instead of ImageNet-normalised ones",
    )  # fmt: skip
    return parser


def _interrupted_message(e: Interrupted, resumed_from: str | None) -> str:
    where = f"after epoch {e.epoch}" if e.batch == 0 < e.epoch else f"in epoch {e.epoch + 1}"
    how = "terminated (SIGTERM)" if e.signal == "SIGTERM" else "interrupted"
    if e.saved:
        return (
            f"{how} {where}: checkpoint saved to {e.checkpoint}; continue with "
            f"python googlenet.py train --resume {e.checkpoint}"
        )
    last = e.checkpoint or resumed_from
    return "stopped at once: nothing of the unfinished batch was saved; " + (
        f"continue from the last checkpoint with --resume {last}" if last else "no checkpoint yet"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "eval"):
            keep_freed_memory()  # no page faults for each step's freshly allocated arrays
        if args.command == "train":
            train(args)
        elif args.command == "eval":
            evaluate_checkpoint(args)
        elif args.command == "summary":
            _summary_command(args)
        else:
            model = import_torchvision(args.weights, args.out, args.transform_input)
            print(
                f"wrote {args.out}: torchvision GoogLeNet, {model.num_classes} classes, "
                f"{model.num_parameters():,} parameters"
                + (" (aux heads included)" if model.aux_logits else "")
            )
    except CLIError as e:
        print(f"googlenet.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:  # Ctrl-C or SIGTERM in train's loop
        print(f"\ngooglenet.py train: {_interrupted_message(e, args.resume)}", file=sys.stderr)
        return 143 if e.signal == "SIGTERM" else 130
    except NonFiniteLoss as e:
        print(f"googlenet.py train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ngooglenet.py {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
