"""Two checkouts of minidl side by side: training and inference speed of the CIFAR GoogLeNet.

    git worktree add /tmp/old 088e573 && git worktree add /tmp/new HEAD
    python bench/compare_commits.py /tmp/old /tmp/new --widths 0.25 --kernel5 3 5

A refactor must not cost speed; this measures it. Each checkout runs in its own worker process
(its own imports, its own heap), built and warmed up once; the workers then take turns, round by
round, so the shared machine's noise hits both alike. A round times ``--steps`` training steps
(forward, cross-entropy, backward, SGD with momentum) and as many inference passes (eval mode, no
graph) on the same float32 batch. Only APIs both checkouts share are used. Prints the median of
each checkout's rounds and the ratio new/old; ``--json`` also writes every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# The worker: built once, then one timed round per line read from stdin, one JSON line back.
WORKER = r"""
import json, sys, time
import numpy as np
import minidl as md
import minidl.functional as F
from minidl import optim
from minidl.backend import keep_freed_memory
from googlenet import googlenet_cifar

width, kernel5 = float(sys.argv[1]), int(sys.argv[2])
batch, steps = int(sys.argv[3]), int(sys.argv[4])
keep_freed_memory()  # as `googlenet.py train` does
model = googlenet_cifar(width=width, kernel5=kernel5)
if hasattr(model, "fuse"):  # as `googlenet.py train` has it (fused by default before fuse())
    model.fuse()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = md.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
y = md.tensor(rng.integers(0, 10, batch))

def train_step():
    model.train()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()

def infer():
    model.eval()
    with md.no_grad():
        return model(x).data.sum()

for _ in range(2):  # warm-up: the heap grows, caches fill
    train_step(); infer()
print("ready", flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    t1 = time.perf_counter()
    for _ in range(steps):
        infer()
    t2 = time.perf_counter()
    print(json.dumps({"train_img_s": steps * batch / (t1 - t0),
                      "infer_img_s": steps * batch / (t2 - t1)}), flush=True)
"""


def start_worker(tree: str, width: float, kernel5: int, batch: int, steps: int):
    env = dict(os.environ, PYTHONPATH=tree, OPENBLAS_THREAD_TIMEOUT="4", OMP_WAIT_POLICY="PASSIVE")
    args = [sys.executable, "-c", WORKER, str(width), str(kernel5), str(batch), str(steps)]
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree
    )
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the worker for {tree} did not start (exit {proc.wait()})")
    return proc


def run_round(proc) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def compare(trees: list[str], width: float, kernel5: int, args) -> dict:
    workers = [start_worker(t, width, kernel5, args.batch, args.steps) for t in trees]
    rounds: list[list[dict]] = [[] for _ in trees]
    try:
        for r in range(args.rounds):
            order = range(len(trees)) if r % 2 == 0 else reversed(range(len(trees)))
            for i in order:  # alternate who goes first, so neither always follows the other
                rounds[i].append(run_round(workers[i]))
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
    med = [
        {k: statistics.median(r[k] for r in tree_rounds) for k in tree_rounds[0]}
        for tree_rounds in rounds
    ]
    return {"width": width, "kernel5": kernel5, "median": med, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="checkout of the old commit")
    parser.add_argument("new", help="checkout of the new commit")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25])
    parser.add_argument("--kernel5", type=int, nargs="+", default=[3, 5], choices=[3, 5])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average before: {' '.join(load)}; batch {args.batch}, {args.rounds} rounds")
    results = []
    for width in args.widths:
        for k in args.kernel5:
            res = compare([args.old, args.new], width, k, args)
            old, new = res["median"]
            results.append(res)
            for key, label in (("train_img_s", "training"), ("infer_img_s", "inference")):
                print(
                    f"width {width} kernel5 {k} {label:9s}: old {old[key]:6.1f} img/s, "
                    f"new {new[key]:6.1f} img/s, new/old {new[key] / old[key]:.3f}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_before": load, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
