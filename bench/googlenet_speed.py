"""Training and inference speed of the CIFAR GoogLeNet: minidl vs PyTorch, side by side.

    python bench/googlenet_speed.py                      # widths 0.25 and 0.5, batch 128, CPU
    python bench/googlenet_speed.py --widths 0.25 --kernel5 3 --json out.json
    python bench/googlenet_speed.py --device cuda --widths 0.25 0.5 1.0   # CuPy vs PyTorch cuDNN

Both frameworks build the same network (``googlenet_cifar``: 3x3 stem, inception 3a-5b, true 5x5
by default). Each framework runs in its own worker process (its own imports, heap and thread
pools, each with all cores), built and warmed up once; the workers then take turns, one timed
step each, alternating who goes first, so the shared machine's noise hits all alike. A training
step is forward, cross-entropy, backward and SGD with momentum; inference is a forward pass in
eval mode without a graph. PyTorch runs in its default NCHW layout and with ``channels_last``.

Distance to the machine: each step's achieved GFLOP/s (2 FLOPs per multiply-add of the
convolutions and the classifier, counted by ``minidl.summary``: three GEMMs per layer in training,
forward, dW and dx, less the stem's unneeded dx), and its fraction of the machine's GEMM peak,
the best float32 1024x1024x1024 matrix product that NumPy or PyTorch runs in its worker.
Peak memory of a training step is measured in a fresh subprocess per configuration (peak
resident set size minus the size before the first step on the CPU; the allocator's peak on the
GPU). Without PyTorch only minidl's figures are printed. After the table comes where a step's
time goes: each worker profiles a training step (minidl.profiler; torch.profiler's self times),
three times in turns, and the median milliseconds per op class are printed side by side (on
the CPU: torch.profiler's CPU times do not see a GPU's kernels).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

# Idle worker threads must not spin: both frameworks run in this process, taking turns, and a pool
# left spinning by one steals a core from the other's next step. OpenBLAS (as googlenet.py train
# sets it): a short spin before its threads sleep. PyTorch's OpenMP pool spins for a while after
# each parallel region by default; on 2 cores that cost the minidl step after it ~25% (46 vs 61
# images/s) while PyTorch's own figure did not move (68.5 vs 68.6). Both are read at load time.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# ----------------------------------------------------------------------------- PyTorch model
def torch_googlenet_cifar(width: float, kernel5: int, num_classes: int = 10):
    """The same network as googlenet.googlenet_cifar, written in PyTorch for the comparison."""
    import torch.nn as tnn

    from googlenet import INCEPTION_CHANNELS, scale_channels

    def block(cin, cout, k, pad=0):
        return tnn.Sequential(
            tnn.Conv2d(cin, cout, k, padding=pad, bias=False),
            tnn.BatchNorm2d(cout, eps=1e-3),
            tnn.ReLU(inplace=True),
        )

    class Inception(tnn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, cp):
            super().__init__()
            self.b1 = block(cin, c1, 1)
            self.b2 = tnn.Sequential(block(cin, c3r, 1), block(c3r, c3, 3, 1))
            self.b3 = tnn.Sequential(block(cin, c5r, 1), block(c5r, c5, kernel5, kernel5 // 2))
            self.b4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1), block(cin, cp, 1))

        def forward(self, x):
            import torch

            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)

    def inc(name):
        return Inception(*(scale_channels(n, width) for n in INCEPTION_CHANNELS[name]))

    c5b = INCEPTION_CHANNELS["5b"]
    out_channels = sum(scale_channels(c5b[i], width) for i in (1, 3, 5, 6))
    return tnn.Sequential(
        block(3, scale_channels(192, width), 3, 1),
        inc("3a"), inc("3b"), tnn.MaxPool2d(3, 2, 1),
        inc("4a"), inc("4b"), inc("4c"), inc("4d"), inc("4e"), tnn.MaxPool2d(3, 2, 1),
        inc("5a"), inc("5b"),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(0.2),
        tnn.Linear(out_channels, num_classes),
    )  # fmt: skip


# ----------------------------------------------------------------------------- one config
# Op classes for the side-by-side profile: substrings of minidl's op names (minidl.profiler) and
# of PyTorch's aten ops. minidl fuses the ReLU into batch norm, so the two are one class; its
# Split is the 1x1 convolutions' stacking (PyTorch sums the branches' gradients instead).
OP_CLASSES = {
    "convolution": ("Conv2d", "conv"),
    "batch norm + ReLU": ("BatchNorm", "ReLU", "batch_norm", "relu", "threshold", "clamp_min"),
    "max pooling": ("MaxPool2d", "max_pool"),
    "concat / split": ("Concat", "Split", "aten::cat"),
}


def per_class(per_op: list[tuple[str, float]], wall_ms: float) -> dict[str, float]:
    """(op name, ms) pairs, an op possibly more than once (forward and backward), summed per
    ``OP_CLASSES`` class; "everything else" is the rest of ``wall_ms`` (also "step")."""
    times = dict.fromkeys(OP_CLASSES, 0.0)
    for op, ms in per_op:
        name = next((c for c, keys in OP_CLASSES.items() if any(k in op for k in keys)), None)
        if name is not None:
            times[name] += ms
    times["everything else"] = wall_ms - sum(times.values())
    times["step"] = wall_ms
    return times


class Runner:
    """Builds one framework's model and optimizer and runs a training step or an inference."""

    def __init__(self, framework: str, width: float, kernel5: int, batch: int, device: str):
        self.framework, self.device = framework, device
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        if framework == "minidl":
            import minidl as md
            from googlenet import googlenet_cifar

            self.md = md
            self.model = googlenet_cifar(width=width, kernel5=kernel5).fuse().to(device)
            self.opt = md.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
            self.x = md.tensor(x, device=device)
            self.y = md.tensor(y, device=device)
        else:
            import torch

            self.torch = torch
            dev = "cuda" if device == "cuda" else "cpu"
            self.model = torch_googlenet_cifar(width, kernel5).to(dev)
            self.x = torch.from_numpy(x).to(dev)
            self.y = torch.from_numpy(y).to(dev)
            if framework == "torch_cl":
                self.model = self.model.to(memory_format=torch.channels_last)
                self.x = self.x.contiguous(memory_format=torch.channels_last)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def sync(self) -> None:
        if self.device != "cuda":
            return
        if self.framework == "minidl":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        else:
            self.torch.cuda.synchronize()

    def train_step(self) -> None:
        self.model.train()
        if self.framework == "minidl":
            F = self.md.functional
            self.opt.zero_grad()
            loss = F.cross_entropy(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
        else:
            self.opt.zero_grad(set_to_none=True)
            loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
        self.sync()

    def infer(self) -> None:
        self.model.eval()
        if self.framework == "minidl":
            with self.md.no_grad():
                self.model(self.x)
        else:
            with self.torch.no_grad():
                self.model(self.x)
        self.sync()

    def op_times(self) -> dict[str, float]:
        """Milliseconds of one profiled training step per op class (``OP_CLASSES``), and its
        wall time ("step"); "everything else" is the rest (optimizer, autograd, Python)."""
        start = time.perf_counter()
        if self.framework == "minidl":
            from minidl.profiler import profile

            with profile() as prof:
                self.train_step()
            per_op = [(op, s * 1e3) for (op, _phase), s in prof.seconds.items()]
        else:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                self.train_step()  # self time: a wrapper op does not count its callees again
            per_op = [(e.key, e.self_cpu_time_total / 1e3) for e in prof.key_averages()]
        return per_class(per_op, (time.perf_counter() - start) * 1e3)

    def gemm_gflops(self, n: int = 1024, reps: int = 5) -> float:
        """This framework's best float32 n x n x n matrix product on the device, in GFLOP/s."""
        if self.framework == "minidl":
            xp = self.md.backend.module_for(self.device)
            a = xp.asarray(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32))
        else:
            a = self.torch.randn(n, n, device="cuda" if self.device == "cuda" else "cpu")
        best = float("inf")
        for _ in range(reps + 1):  # the first one warms up
            start = time.perf_counter()
            a @ a
            self.sync()
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best / 1e9


def step_flops(width: float, kernel5: int, batch: int) -> dict[str, float]:
    """FLOPs of a training step and of an inference: 2 per multiply-add of the convolutions and
    the classifier (``minidl.summary``); training runs three GEMMs a layer (y, dW, dx), less the
    stem's dx, which nothing needs."""
    import minidl as md
    from googlenet import googlenet_cifar
    from minidl.summary import profile

    model = googlenet_cifar(width=width, kernel5=kernel5)
    model.eval()
    layers = profile(model, md.tensor(np.zeros((1, 3, 32, 32), np.float32)))
    macs, stem = layers[""].macs, layers["conv1.conv"].macs
    return {"train": 2.0 * batch * (3 * macs - stem), "infer": 2.0 * batch * macs}


# ----------------------------------------------------------------------------- worker processes
class Worker:
    """One framework's Runner in its own process: ``ask("train_step" | "infer")`` times one step
    (seconds), ``ask("gemm")`` is its GEMM speed."""

    def __init__(self, spec: list, malloc_default: bool):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
        cmd += ["--malloc-default"] if malloc_default else []
        # all cores for each, as PyTorch's set_num_threads: minidl's load-following policy would
        # otherwise count the other workers' turns as another program's load and step aside
        cores = str(os.cpu_count() or 1)
        env = dict(os.environ, MINIDL_THREADS=cores, OPENBLAS_NUM_THREADS=cores)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the worker {spec} did not start (exit {self.proc.wait()})")

    def ask(self, command: str) -> float:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _worker(spec: str) -> None:
    runner = Runner(*json.loads(spec))
    if runner.framework != "minidl":
        runner.torch.set_num_threads(os.cpu_count() or 1)
    for _ in range(2):  # warm-up: allocations, BLAS threads, caches
        runner.train_step()
        runner.infer()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "gemm":
            value = runner.gemm_gflops()
        elif command == "op_times":
            value = runner.op_times()
        else:
            start = time.perf_counter()
            getattr(runner, command)()
            value = time.perf_counter() - start
        print(json.dumps(value), flush=True)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_memory(
    framework: str, width: float, kernel5: int, batch: int, device: str, malloc_default: bool
) -> float:
    """Peak MB of training steps in a fresh process (CPU: peak RSS - RSS before the first step)."""
    spec = json.dumps([framework, width, kernel5, batch, device])
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", spec]
    cmd += ["--malloc-default"] if malloc_default else []  # the child allocates as we do
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _memory_child(framework, width, kernel5, batch, device) -> float:
    runner = Runner(framework, width, kernel5, batch, device)
    if device == "cuda":
        runner.train_step()
        if framework == "minidl":
            import cupy

            pool = cupy.get_default_memory_pool()
            pool.free_all_blocks()
            runner.train_step()
            return pool.total_bytes() / 2**20
        runner.torch.cuda.reset_peak_memory_stats()
        runner.train_step()
        return runner.torch.cuda.max_memory_allocated() / 2**20
    before = _rss_mb()
    for _ in range(2):
        runner.train_step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak - before


# ----------------------------------------------------------------------------- main
def time_alternating(workers: dict, mode: str, rounds: int, batch: int) -> dict[str, float]:
    """Median images/s per framework, one step each per round, who goes first alternating."""
    times: dict[str, list[float]] = {name: [] for name in workers}
    names = list(workers)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(workers[name].ask(mode))
    return {name: batch / statistics.median(t) for name, t in times.items()}


def op_breakdown(workers: dict, rounds: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per op class of a profiled training step, per framework, the
    frameworks taking turns as in ``time_alternating``."""
    runs: dict[str, list[dict]] = {name: [] for name in workers}
    names = list(workers)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(workers[name].ask("op_times"))
    return {
        name: {c: statistics.median(t[c] for t in times) for c in times[0]}
        for name, times in runs.items()
    }


def print_breakdown(op_ms: dict[str, dict[str, float]]) -> None:
    """Milliseconds per op class side by side, with minidl / PyTorch channels_last."""
    names = list(op_ms)
    classes = list(op_ms[names[0]])
    header = f"{'op class':<20}" + "".join(f"{n + ' ms':>13}" for n in names)
    if "torch_cl" in op_ms:
        header += f"{'minidl / CL':>13}"
    print(header)
    for c in classes:
        line = f"{c:<20}" + "".join(f"{op_ms[n][c]:>13.1f}" for n in names)
        if "torch_cl" in op_ms and op_ms["torch_cl"][c] > 0:
            line += f"{op_ms['minidl'][c] / op_ms['torch_cl'][c]:>12.2f}x"
        print(line)


def print_tables(records: list[dict], args, torch_version: str | None) -> None:
    """The speed and memory table, then the distance to the machine."""
    print(
        f"\nCIFAR GoogLeNet, batch {args.batch}, float32, kernel5={args.kernel5}, "
        f"device {args.device}, {os.cpu_count()} cores, PyTorch {torch_version}"
    )
    header = f"{'width':>6} {'mode':<10} {'minidl img/s':>13}"
    if torch_version:
        header += f" {'torch img/s':>12} {'torch CL':>9} {'vs torch':>9} {'vs CL':>7}"
    print(header)
    for r in records:
        for mode in ("train", "infer"):
            v = r[mode]
            line = f"{r['width']:>6} {mode:<10} {v['minidl']:>13.1f}"
            if torch_version:
                line += (
                    f" {v['torch']:>12.1f} {v['torch_cl']:>9.1f} "
                    f"{v['minidl'] / v['torch']:>8.2f}x {v['minidl'] / v['torch_cl']:>6.2f}x"
                )
            print(line)
        if r["memory_mb"]:
            m = r["memory_mb"]
            line = f"{r['width']:>6} {'peak MB':<10} {m['minidl']:>13.0f}"
            if torch_version:
                line += (
                    f" {m['torch']:>12.0f} {m['torch_cl']:>9.0f} "
                    f"{m['minidl'] / m['torch']:>8.2f}x {m['minidl'] / m['torch_cl']:>6.2f}x"
                )
            print(line)
    print("\nDistance to the machine: achieved GFLOP/s and fraction of the GEMM peak")
    for r in records:
        peak = max(r["gemm_gflops"].values())
        gemm = ", ".join(f"{f} {v:.0f}" for f, v in r["gemm_gflops"].items())
        print(f"width {r['width']}: GEMM peak {peak:.0f} GFLOP/s (1024^3 float32: {gemm})")
        for mode in ("train", "infer"):
            per_step = r["flops"][mode] / 1e9
            cells = [
                f"{f} {per_step * v / args.batch:.0f} ({per_step * v / args.batch / peak:.0%})"
                for f, v in r[mode].items()
            ]
            print(f"  {mode:<6} {per_step:6.1f} GFLOP/step: " + ", ".join(cells))
        print(f"  load average at the end: {' '.join(f'{v:.2f}' for v in r['load'])}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--kernel5", type=int, default=5, choices=[3, 5])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--malloc-default",
        action="store_true",
        help="leave glibc's malloc as it is (by default both frameworks, in this one process, "
        "run with minidl.backend.keep_freed_memory(), as googlenet.py train does)",
    )
    args = parser.parse_args(argv)
    if not args.malloc_default:
        from minidl.backend import keep_freed_memory

        keep_freed_memory()
    if args.memory_child:  # a fresh process measuring one configuration's peak memory
        print(json.dumps(_memory_child(*json.loads(args.memory_child))))
        return 0
    if args.worker:  # one framework's timing process
        _worker(args.worker)
        return 0

    try:
        import torch

        frameworks = ["minidl", "torch", "torch_cl"]
        torch_version = torch.__version__
    except ImportError:
        frameworks, torch_version = ["minidl"], None
        print("PyTorch is not installed: minidl's own figures only")

    records = []
    for width in args.widths:
        spec = [width, args.kernel5, args.batch, args.device]
        workers = {f: Worker([f, *spec], args.malloc_default) for f in frameworks}
        try:
            train = time_alternating(workers, "train_step", args.rounds, args.batch)
            infer = time_alternating(workers, "infer", args.rounds, args.batch)
            gemm = {f: w.ask("gemm") for f, w in workers.items()}
            # torch.profiler's CPU self times say nothing of a GPU's kernels: CPU only
            profiled = not args.no_profile and args.device == "cpu"
            op_ms = op_breakdown(workers, 3) if profiled else {}
        finally:
            for w in workers.values():
                w.close()
        memory = {}
        if not args.no_memory:
            for f in frameworks:
                memory[f] = measure_memory(
                    f, width, args.kernel5, args.batch, args.device, args.malloc_default
                )
        flops = step_flops(width, args.kernel5, args.batch)
        records.append(dict(width=width, train=train, infer=infer, memory_mb=memory,
                            flops=flops, gemm_gflops=gemm, op_ms=op_ms,
                            load=os.getloadavg()))  # fmt: skip

    print_tables(records, args, torch_version)
    for r in records:
        if r["op_ms"]:
            print(f"\nA profiled training step by op class, width {r['width']} (median of 3):")
            print_breakdown(r["op_ms"])
    if args.json:
        meta = dict(batch=args.batch, kernel5=args.kernel5, device=args.device,
                    cores=os.cpu_count(), torch=torch_version)  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, records=records), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
