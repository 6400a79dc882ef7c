"""Kernel launches and synchronisations of one GoogLeNet training step, by minidl source file.

    python bench/gpu_launches.py            # the command line's model: width 0.25, no aux heads
    python bench/gpu_launches.py --lines 30 # and the 30 source lines that launch the most

On a GPU a small model's step is bound by launches (a few microseconds each, whatever the work)
and by synchronisations (the host waits for the queue to drain), not by its FLOPs. The simulated
CuPy counts both for every array operation; this script attributes each launch to the innermost
minidl (or googlenet) source line that asked for it. The counts do not depend on the batch size
or on the machine, so this runs anywhere, on the CPU, in a few seconds.
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import minidl as md  # noqa: E402
from googlenet import googlenet_cifar  # noqa: E402
from googlenet_cli import make_loss  # noqa: E402
from minidl import backend, optim  # noqa: E402
from minidl.testing.cupy_sim import _array, _namespace  # noqa: E402
from minidl.train import train_step  # noqa: E402


def _attributing(where: collections.Counter, count):
    def counting(n: int = 1) -> None:
        for frame in reversed(traceback.extract_stack()[:-1]):
            path = Path(frame.filename)
            inside = ROOT in path.parents and "testing" not in path.parts
            if inside and (path.parent.name in ("minidl", "ops", "nn", "optim", "data")
                           or path.name.startswith("googlenet")):  # fmt: skip
                where[f"{path.relative_to(ROOT)}:{frame.lineno}"] += n
                break
        count(n)

    return counting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--aux", action="store_true", help="with the two auxiliary heads")
    parser.add_argument("--lines", type=int, default=0, help="also the top source lines")
    args = parser.parse_args()
    where: collections.Counter = collections.Counter()
    counting = _attributing(where, _array.count_launch)
    _array.count_launch = _namespace.count_launch = counting
    with backend.simulate_cuda() as sim:
        md.nn.init.manual_seed(0)
        model = googlenet_cifar(args.width, aux_logits=args.aux).fuse().to("cuda").train()
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((8, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 8)
        for _ in range(2):  # the second step: the optimizer's state exists
            xt, yt = md.tensor(x, device="cuda"), md.tensor(y, device="cuda")
            where.clear()
            sim.stats.reset()
            train_step(model, make_loss(0.3, 0.1), opt, xt, yt)
    print(f"one training step: {sim.stats.launches:,} kernel launches, {sim.stats.syncs} sync(s)")
    files: collections.Counter = collections.Counter()
    for line, n in where.items():
        files[line.rsplit(":", 1)[0]] += n
    for name, n in files.most_common():
        print(f"  {n:6,}  {name}")
    if args.lines:
        print(f"the {args.lines} source lines that launch the most:")
        for line, n in where.most_common(args.lines):
            print(f"  {n:6,}  {line}")


if __name__ == "__main__":
    main()
