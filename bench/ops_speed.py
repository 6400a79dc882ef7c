"""Speed and peak memory of GoogLeNet's hot ops, minidl vs PyTorch CPU, side by side in one run.

    python bench/ops_speed.py [--repeats 7] [--no-memory]

Each case runs forward + backward (float32, batch 128, every input requiring a gradient, a random
upstream gradient). Timings alternate minidl and PyTorch repetition by repetition, so load from
other processes on a shared machine hits both alike; the median of each is reported with the ratio
minidl / PyTorch (below 1: minidl is faster).

Both frameworks get the same NCHW-contiguous input and upstream gradient, as a PyTorch user would
pass. Inside a minidl network conv2d returns channels-last views and the ops after it keep that
layout, which saves the transposes at the op boundaries; the "minidl, channels-last" column times
that case (no PyTorch counterpart is timed for it).

Peak memory: each (case, framework) runs once more in a fresh subprocess, which reports how far the
process's peak resident set size rose during one forward + backward above its level after imports
and input creation (Linux: VmHWM in /proc/self/status, reset just before the step through
/proc/self/clear_refs; ``ru_maxrss`` cannot serve, a child inherits its parent's). That measures
the same thing for both frameworks (tracemalloc would see NumPy's buffers but not PyTorch's): the
transient working memory of the op, saved tensors and gradients included, inputs excluded.

Runs without PyTorch too: then only minidl's figures are printed.
"""

from __future__ import annotations

import os

# Idle BLAS/OpenMP worker threads must not spin: both frameworks run in this process, taking turns,
# and a pool left spinning by one steals a core from the other (and from minidl's own thread pool).
# OpenBLAS reads this at load time (2**4 cycles before its threads sleep; the default is 2**28).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minidl as md  # noqa: E402
import minidl.functional as F  # noqa: E402

CASES = {
    "conv3x3 64->64 32x32 p1": ((128, 64, 32, 32), (64, 64, 3, 3), "conv", {"padding": 1}),
    "conv1x1 192->64 32x32": ((128, 192, 32, 32), (64, 192, 1, 1), "conv", {}),
    "max_pool 3x3 s1 p1 192ch 32x32": ((128, 192, 32, 32), None, "maxpool", {}),
}


def _arrays(case, seed=0):
    x_shape, w_shape, kind, _ = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = None
    if w_shape is not None:
        fan_in = int(np.prod(w_shape[1:]))
        w = rng.standard_normal(w_shape, dtype=np.float32) * np.float32(fan_in**-0.5)
    return x, w


def _out_shape(case):
    x_shape, w_shape, kind, _ = CASES[case]
    return (x_shape[0], w_shape[0], 32, 32) if kind == "conv" else x_shape


def minidl_step(case, channels_last=False):
    """A closure running one forward + backward of ``case`` in minidl."""
    x_np, w_np = _arrays(case)
    _, _, kind, kw = CASES[case]
    if channels_last:
        x_np = np.ascontiguousarray(x_np.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    g = np.random.default_rng(1).standard_normal(_out_shape(case), dtype=np.float32)
    if channels_last:
        g = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    x = md.Tensor(x_np, requires_grad=True)
    w = md.Tensor(w_np, requires_grad=True) if w_np is not None else None
    b = (
        md.Tensor(np.zeros(w_np.shape[0], np.float32), requires_grad=True)
        if w is not None
        else None
    )

    def step():
        x.grad = None
        if kind == "conv":
            w.grad = b.grad = None
            y = F.conv2d(x, w, b, **kw)
        else:
            y = F.max_pool2d(x, 3, 1, 1)
        y.backward(g)

    return step


def torch_step(case):
    import torch

    x_np, w_np = _arrays(case)
    _, _, kind, kw = CASES[case]
    x = torch.tensor(x_np, requires_grad=True)
    w = torch.tensor(w_np, requires_grad=True) if w_np is not None else None
    b = torch.zeros(w_np.shape[0], requires_grad=True) if w is not None else None
    g = torch.tensor(np.random.default_rng(1).standard_normal(_out_shape(case), dtype=np.float32))

    def step():
        x.grad = None
        if kind == "conv":
            w.grad = b.grad = None
            y = torch.nn.functional.conv2d(x, w, b, **kw)
        else:
            y = torch.nn.functional.max_pool2d(x, 3, 1, 1)
        y.backward(g)

    return step


def _time(step):
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def _status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _memory_child(case, framework):
    step = torch_step(case) if framework == "torch" else minidl_step(case)
    if sys.platform.startswith("linux"):
        # VmHWM (peak RSS) belongs to this process image; "5" into clear_refs resets it to the
        # current RSS, so the peak below is reached during the step itself
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        step()
        peak = _status_mb("VmHWM")
    else:  # ru_maxrss: bytes on macOS (and inherited from the parent, so only an upper bound)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"peak_mb": peak - before}))


def peak_memory(case, framework):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", case, framework],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(*args.memory_child)
        return 0

    torch_ok = has_torch()
    line = f"machine: {machine()}"
    if torch_ok:
        import torch

        line += f"; PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
    print(line)
    print(f"forward + backward, float32, median of {args.repeats} alternating runs\n")
    head = f"{'op':<32} {'minidl ms':>9} {'chl-last':>9}"
    if torch_ok:
        head += f" {'torch ms':>9} {'ratio':>6}"
    head += f" {'minidl MB':>9}" + (f" {'torch MB':>9}" if torch_ok else "")
    print(head)
    print("-" * len(head))
    for case in CASES:
        steps = {"minidl": minidl_step(case), "chl": minidl_step(case, channels_last=True)}
        if torch_ok:
            steps["torch"] = torch_step(case)
        times = {k: [] for k in steps}
        for step in steps.values():
            step()  # warm-up: first-touch page faults, thread pools, BLAS buffers
        for _ in range(args.repeats):
            for k, step in steps.items():
                times[k].append(_time(step))
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        row = f"{case:<32} {ms['minidl']:>9.1f} {ms['chl']:>9.1f}"
        if torch_ok:
            row += f" {ms['torch']:>9.1f} {ms['minidl'] / ms['torch']:>6.2f}"
        if args.no_memory:
            row += f" {'-':>9}" + (f" {'-':>9}" if torch_ok else "")
        else:
            row += f" {peak_memory(case, 'minidl'):>9.0f}"
            if torch_ok:
                row += f" {peak_memory(case, 'torch'):>9.0f}"
        print(row, flush=True)
        del steps
    return 0


if __name__ == "__main__":
    sys.exit(main())
