"""The command line of ``googlenet.py``: train the CIFAR-10 model, evaluate a checkpoint, print
the paper's Table 1, convert torchvision's weights. Run it as ``python googlenet.py COMMAND``.

The training loop is the library's (``minidl.training.fit``); what is GoogLeNet's here is the
recipe (``TRAIN_DEFAULTS``), the loss with the auxiliary heads, and what a checkpoint records to
rebuild its model (``model_config``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from typing import Any

import numpy as np

import minidl as md
import minidl.functional as F
from googlenet import VARIANTS, GoogLeNet, GoogLeNetOutputs, googlenet_cifar
from googlenet_table import summary
from minidl import checkpoint
from minidl.backend import keep_freed_memory
from minidl.training import Interrupted


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


def load_model(path: str, device: str = "cpu") -> GoogLeNet:
    """A model with the weights of a checkpoint or an imported torchvision ``.npz``."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["model_config"])
    try:
        model.load_state_dict(ckpt["model"])
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
    if data is None:
        os.makedirs(root, exist_ok=True)
    try:
        return CIFAR10(root, train=train, download=data is None)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise CLIError(f"cannot load CIFAR-10 from {root!r}: {e}") from None


def _device(name: str) -> str:
    try:
        device = md.backend.check_device(name)
        md.backend.module_for(device)  # imports CuPy and finds a GPU for "cuda"
    except (ValueError, TypeError, RuntimeError) as e:
        raise CLIError(f"--device: {e}") from None
    return device


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


def _make_schedule(optimizer: Any, args: Any, total_steps: int) -> Any:
    """Per-batch learning-rate schedule: OneCycle (warm-up then cosine down), cosine, or step."""
    from minidl import optim

    if args.schedule == "onecycle":
        return optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=total_steps, pct_start=0.25,
            cycle_momentum=False, div_factor=10.0, final_div_factor=100.0,
        )  # fmt: skip
    if args.schedule == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    steps_per_epoch = max(total_steps // args.epochs, 1)
    return optim.lr_scheduler.StepLR(
        optimizer, step_size=steps_per_epoch * max(args.epochs // 3, 1), gamma=0.1
    )


TRAIN_DEFAULTS = {
    "width": 0.25,
    "kernel5": 3,  # faster than 5 in NumPy at width 1/4 (docs/results.md); --kernel5 5: paper
    "aux": False,
    "epochs": 0,  # 0: as many as fit --time-budget-min, measured on the first batches
    "time_budget_min": 85.0,
    "batch_size": 128,
    "lr": 0.1,
    "schedule": "onecycle",
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "aux_weight": 0.3,
    "label_smoothing": 0.0,
    "cutout": 0,
    "seed": 0,
}


def train(args: Any) -> float:
    """The ``train`` command: returns the final test accuracy."""
    from minidl import optim
    from minidl.data import DataLoader, cifar10_test_transform, cifar10_train_transform
    from minidl.training import estimate_epochs, fit

    run_start = time.perf_counter()  # wall time counts loading the data and calibrating too
    device = _device(args.device)
    os.makedirs(args.out, exist_ok=True)
    ckpt = None
    if args.resume:
        ckpt = read_checkpoint(args.resume)
        if "train_config" not in ckpt:
            raise CLIError(f"{args.resume!r} holds weights only (no training state) to resume")
        saved = ckpt["model_config"]
        check_compatible(
            saved,
            {"variant": "cifar", "width": args.width, "kernel5": args.kernel5,
             "aux_logits": args.aux},
            args.resume,
        )  # fmt: skip
        config = dict(ckpt["train_config"])
        for key, value in vars(args).items():  # options given now override, where allowed
            if key in TRAIN_DEFAULTS and value is not None and key not in ("width", "kernel5"):
                config[key] = value
    else:
        config = {k: (getattr(args, k) if getattr(args, k) is not None else v)
                  for k, v in TRAIN_DEFAULTS.items()}  # fmt: skip
    for key, value in config.items():
        setattr(args, key, value)

    train_set = _load_cifar(args.data, train=True)
    test_set = _load_cifar(args.data, train=False)
    md.nn.init.manual_seed(args.seed)
    np.random.seed(args.seed)  # dropout masks come from the array module's global generator
    if device == "cuda":
        # CuPy's generator is seeded too, but not checkpointed: a resumed GPU run redraws masks
        md.backend.module_for(device).random.seed(args.seed)
    model = googlenet_cifar(
        args.width, len(train_set.classes), aux_logits=args.aux, kernel5=args.kernel5
    ).to(device)
    optimizer = optim.SGD(
        list(model.parameters()), lr=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay,
    )  # fmt: skip
    loader = DataLoader(
        train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed,
        transform=cifar10_train_transform(args.cutout), device=device,
    )  # fmt: skip
    test_loader = DataLoader(test_set, 500, transform=cifar10_test_transform(), device=device)
    if len(loader) == 0:
        raise CLIError(
            f"--batch-size {args.batch_size} is larger than the {len(train_set)} training images"
        )
    loss = make_loss(args.aux_weight, args.label_smoothing)
    if ckpt is None and args.epochs == 0:
        budget_s = args.time_budget_min * 60 - (time.perf_counter() - run_start)
        args.epochs = config["epochs"] = estimate_epochs(
            model, make_loss(args.aux_weight, 0.0), loader, budget_s, len(test_set)
        )
        print(f"{args.epochs} epochs fit the time budget of {args.time_budget_min:g} minutes")
    if args.epochs < 1:
        raise CLIError(f"--epochs must be at least 1, got {args.epochs}")
    schedule = _make_schedule(optimizer, args, args.epochs * len(loader))
    print(
        f"GoogLeNet CIFAR width {args.width:g} ('5x5' kernel {args.kernel5}), "
        f"{model.num_parameters():,} parameters, {args.epochs} epochs of {len(loader)} batches "
        f"of {args.batch_size} on {device}; writing to {args.out}"
    )
    extra = {"model_config": model_config(model), "train_config": config}  # in every checkpoint
    result = fit(
        model, loss, loader, optimizer, args.epochs, schedule=schedule, test_loader=test_loader,
        out=args.out, checkpoint_extra=extra, resume=ckpt,
        stop_after_epochs=args.stop_after_epochs, start_time=run_start,
    )  # fmt: skip
    final = result.rows[-1]["test_acc"] if result.rows else 0.0
    if not result.finished:
        epochs_done = result.rows[-1]["epoch"] if result.rows else 0
        print(f"stopped after {epochs_done} epochs; continue with --resume {result.checkpoint}")
        return final
    print(
        f"final test accuracy {final:.2%} (best {result.best_acc:.2%}) after {args.epochs} "
        f"epochs, wall time {result.elapsed_s / 60:.1f} min"
    )
    return final


# ---------------------------------------------------------------------------- other commands
def evaluate_checkpoint(args: Any) -> float:
    """The ``eval`` command: test accuracy, per-class accuracy, confusion matrix (text + PNG)."""
    from minidl.data import DataLoader, cifar10_test_transform
    from minidl.metrics import confusion_matrix, format_confusion
    from minidl.training import evaluate
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
    model = load_model(args.checkpoint, device)
    test_set = _load_cifar(args.data, train=False)
    loader = DataLoader(
        test_set, args.batch_size, transform=cifar10_test_transform(), device=device
    )
    loss, acc, targets, predictions = evaluate(model, loader)
    matrix = confusion_matrix(targets, predictions, len(test_set.classes))
    print(
        f"checkpoint {args.checkpoint}: width {config['width']:g}, epoch {ckpt.get('epoch', '?')}"
    )
    print(f"test accuracy {acc:.2%} ({int(matrix.trace())}/{len(targets)}), test loss {loss:.4f}")
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


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


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
        "augmentation) aim at 80% test accuracy on a 2-core CPU within 90 minutes: with "
        "--epochs left at 0 the number of epochs is set from the measured speed to fit "
        "--time-budget-min.",
    )
    t.add_argument(
        "--data", help=f"CIFAR-10 folder (default: {DEFAULT_DATA}, downloaded if missing)"
    )
    t.add_argument("--out", default="runs/googlenet_cifar", help="output folder (%(default)s)")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue from a checkpoint (last.npz)")
    t.add_argument("--device", default="cpu", help="cpu or cuda (%(default)s)")
    t.add_argument("--width", type=_positive(float), help=f"channel multiplier ({d['width']})")
    t.add_argument(
        "--kernel5", type=int, choices=(3, 5), help=f"'5x5' branch kernel ({d['kernel5']})"
    )
    t.add_argument("--aux", action=argparse.BooleanOptionalAction, help="auxiliary heads (off)")
    t.add_argument("--epochs", type=int, help="epochs; 0 = as many as fit the time budget (0)")
    t.add_argument(
        "--time-budget-min", type=_positive(float),
        help=f"minutes the run may take when --epochs is 0 ({d['time_budget_min']:g})",
    )  # fmt: skip
    t.add_argument("--batch-size", type=_positive(int), help=f"({d['batch_size']})")
    t.add_argument("--lr", type=_positive(float), help=f"peak learning rate ({d['lr']})")
    t.add_argument("--schedule", choices=("onecycle", "cosine", "step"), help="(onecycle)")
    t.add_argument("--momentum", type=float, help=f"({d['momentum']})")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, help="(on)")
    t.add_argument("--weight-decay", type=float, help=f"({d['weight_decay']})")
    t.add_argument("--aux-weight", type=float, help=f"weight of each aux loss ({d['aux_weight']})")
    t.add_argument("--label-smoothing", type=float, help=f"({d['label_smoothing']})")
    t.add_argument("--cutout", type=int, help="cutout square size, 0 = off (0)")
    t.add_argument("--seed", type=int, help=f"({d['seed']})")
    t.add_argument(
        "--stop-after-epochs", type=_positive(int), metavar="N",
        help="stop after N epochs of this session, leaving last.npz to --resume later",
    )  # fmt: skip

    e = commands.add_parser("eval", help="evaluate a checkpoint on the CIFAR-10 test set")
    e.add_argument("--checkpoint", required=True, help="a checkpoint written by train")
    e.add_argument("--data", help=f"CIFAR-10 folder (default: {DEFAULT_DATA})")
    e.add_argument("--device", default="cpu", help="cpu or cuda (%(default)s)")
    e.add_argument("--batch-size", type=_positive(int), default=500)
    e.add_argument("--variant", choices=VARIANTS, help="expected variant (checked)")
    e.add_argument("--width", type=_positive(float), help="expected width (checked)")
    e.add_argument("--confusion", help="confusion matrix PNG (default: next to the checkpoint)")

    s = commands.add_parser("summary", help="print the paper's Table 1 for a variant")
    s.add_argument("--variant", choices=VARIANTS, default="paper")
    s.add_argument("--width", type=_positive(float), help="channel multiplier (cifar only)")
    s.add_argument("--input-size", type=_positive(int), help="224 (ImageNet) or 32 (cifar)")
    s.add_argument(
        "--kernel5", type=int, choices=(3, 5),
        help="'5x5' branch kernel (paper 5, torchvision 3, cifar: train's default 3)",
    )  # fmt: skip
    s.add_argument("--num-classes", type=_positive(int))
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
    except Interrupted as e:  # Ctrl-C in train's loop: the run's state was saved first
        where = f"after epoch {e.epoch}" if e.batch == 0 < e.epoch else f"in epoch {e.epoch + 1}"
        print(
            f"\ngooglenet.py train: interrupted {where}: checkpoint saved to {e.checkpoint}; "
            f"continue with --resume {e.checkpoint}",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        print(f"\ngooglenet.py {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
