"""Training speed under load: minidl and PyTorch, idle and beside 1 and 2 busy processes.

    python bench/under_load.py                       # width 0.25, batch 64, kernel5 3
    python bench/under_load.py --busy 0 2 --rounds 5 --json bench/results/under_load.json
    python bench/under_load.py --variant "minidl:OPENBLAS_NUM_THREADS=1"   # one more contender

A laptop runs other programs too. Each framework trains the CIFAR GoogLeNet in its own worker
process (its own imports and threads, the environment a user's program gets: no OPENBLAS_* or
OMP_* settings unless a ``--variant`` asks for them). For each load level, that many competitor
processes (``while True: pass``, one core each) are started, and the workers then take turns,
round by round, alternating who goes first; each round times ``--steps`` training steps
(forward, cross-entropy, backward, SGD with momentum) on a fixed random batch. Printed per
framework: the median step time at each level and the slowdown factor against its idle median.
The load average is printed before and after each level.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The worker: built and warmed up once, then one timed round per line read from stdin.
WORKER = r"""
import json, sys, time
import numpy as np
framework, width, kernel5, batch, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
xs = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
ys = rng.integers(0, 10, batch)
if framework == "minidl":
    import minidl as md
    import minidl.functional as F
    from minidl.backend import keep_freed_memory
    from googlenet import googlenet_cifar
    keep_freed_memory()  # as `googlenet.py train` does
    model = googlenet_cifar(width=width, kernel5=kernel5).fuse()
    opt = md.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = md.tensor(xs), md.tensor(ys)
else:
    import torch
    sys.path.insert(0, "bench")
    from googlenet_speed import torch_googlenet_cifar
    F = torch.nn.functional
    model = torch_googlenet_cifar(width, kernel5)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    if framework == "torch_cl":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
model.train()

def step():
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

for _ in range(2):  # warm-up: the heap grows, caches fill, thread pools start
    step()
print("ready", flush=True)
for line in sys.stdin:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps(times), flush=True)
"""

# What a user's program gets: none of the thread settings the other benchmarks make.
CLEARED = ("OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS",
           "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "MINIDL_THREADS")  # fmt: skip


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start_worker(name: str, args) -> subprocess.Popen:
    framework, _, settings = name.partition(":")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = ROOT
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        env[key] = value
    argv = [sys.executable, "-c", WORKER, framework, str(args.width), str(args.kernel5),
            str(args.batch), str(args.steps)]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)  # fmt: skip
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {name} worker did not start (exit {proc.wait()})")
    return proc


def run_round(proc: subprocess.Popen) -> list[float]:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--kernel5", type=int, default=3, choices=[3, 5])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--busy", type=int, nargs="+", default=[0, 1, 2],
        help="numbers of busy competitor processes; 0 (idle) comes first",
    )  # fmt: skip
    parser.add_argument(
        "--frameworks", nargs="+", default=["minidl", "torch"],
        help="minidl, torch (NCHW), torch_cl (channels_last)",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="FW:KEY=VALUE,...",
        help="one more contender: a framework with environment settings",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    levels = sorted(set(args.busy) | {0})
    names = args.frameworks + args.variant
    print(
        f"{os.cpu_count()} cores; width {args.width}, batch {args.batch}, kernel5 "
        f"{args.kernel5}; {args.rounds} rounds of {args.steps} steps; load {loadavg()}"
    )
    workers = {name: start_worker(name, args) for name in names}
    times: dict[int, dict[str, list[float]]] = {}
    loads = {}
    try:
        for level in levels:
            competitors = busy_processes(level)
            try:
                time.sleep(2 if level else 0)  # the competitors get going
                before = loadavg()
                times[level] = {name: [] for name in names}
                for r in range(args.rounds):
                    order = names if r % 2 == 0 else names[::-1]
                    for name in order:
                        times[level][name] += run_round(workers[name])
                loads[level] = (before, loadavg())
            finally:
                for c in competitors:
                    c.kill()
                    c.wait()
            medians = {name: statistics.median(t) for name, t in times[level].items()}
            print(f"\n{level} busy: load {loads[level][0]} -> {loads[level][1]}")
            for name in names:
                idle = statistics.median(times[0][name])
                print(f"  {name:40s} {medians[name]:7.3f} s/step  slowdown "
                      f"{medians[name] / idle:5.2f}x")  # fmt: skip
    finally:
        for w in workers.values():
            w.stdin.close()
            w.wait()
    if args.json:
        meta = {k: getattr(args, k) for k in ("width", "kernel5", "batch", "steps", "rounds")}
        meta.update(cores=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        result = {
            "meta": meta,
            "load": {str(k): v for k, v in loads.items()},
            "step_s": {str(k): v for k, v in times.items()},
            "median_s": {
                str(k): {n: statistics.median(t) for n, t in v.items()} for k, v in times.items()
            },
            "slowdown": {
                str(k): {
                    n: statistics.median(t) / statistics.median(times[0][n]) for n, t in v.items()
                }
                for k, v in times.items()
            },
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
