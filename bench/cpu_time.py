"""Where a minidl training step spends the CPU: BLAS, NumPy loops, copies, Python, waiting.

    pip install py-spy
    python bench/cpu_time.py                      # training steps, width 0.25, 3x3 branch
    python bench/cpu_time.py --mode infer --seconds 20 --top 15

A sampling profile of the bench's CIFAR GoogLeNet (``googlenet_speed.Runner``) stepping in a loop
for ``--seconds``: py-spy samples every thread's native and Python stack ``--rate`` times a
second, and each sample is sorted by its innermost frames into

- OpenBLAS: the GEMM kernels and their packing copies (the arithmetic),
- NumPy loops: ufuncs, casts, reductions and strided copies (the memory passes around it),
- libc: memcpy/memset (contiguous copies) and malloc,
- Python: the interpreter (autograd graph, op dispatch, the loops over blocks),
- waiting for the GIL: a thread that finished a NumPy call and waits to run Python again,
- idle: a pool thread waiting for work, or the caller waiting for its pool.

The samples include the model's build and two warm-up steps (a few seconds of ``--seconds``).
py-spy samples Python's threads only: a helper thread of OpenBLAS (when it splits one large GEMM
over the cores) is not seen, so the OpenBLAS share is a lower bound.

The busy kinds' shares say how much of the step is arithmetic and how much is memory passes and
overhead. The steps run twice, once without py-spy (whose sampling pauses the process and so
slows it) for the time per step and how many cores were busy on average (the process's CPU time
over the wall time of its steps), then sampled for the breakdown. Last come the source lines of
minidl (or NumPy) that the busy samples came from, by share. minidl.profiler says which op takes
how long; this says what the CPU does meanwhile.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # as googlenet.py train and the other benches

HERE = os.path.dirname(os.path.abspath(__file__))
WAITING = "waiting for the GIL"
IDLE = "idle (pool or caller waiting)"


def kind(frames: list[str]) -> str:
    """The kind of work of one sampled stack (outermost frame first), as listed in the module
    docstring. py-spy names a native frame "function (library)" and a Python one
    "function (file.py:line)"."""
    inner = frames[-4:]
    if any(w in f for f in inner for w in ("SimpleQueue_get", "acquire_lock", "Condition.wait")):
        return IDLE
    if any(w in f for f in frames[-3:] for w in ("pthread_cond", "sem_wait", "take_gil")):
        return WAITING
    leaf = frames[-1]
    if "openblas" in leaf or "gemm" in leaf:
        return "OpenBLAS"
    if "libc.so" in leaf:
        return "libc"
    if "_umath" in leaf:  # _multiarray_umath: ufuncs, casts, copies, reductions
        return "NumPy loops"
    if ".py:" in leaf or ".py)" in leaf:
        return "Python"
    return "other native"


def python_caller(frames: list[str]) -> str:
    """The innermost Python frame of a stack, outside threading's and concurrent's plumbing."""
    for f in reversed(frames):
        if ".py:" in f and "threading.py" not in f and "concurrent/" not in f:
            return f
    return "(no Python frame)"


def read_raw(path: str) -> list[tuple[list[str], int]]:
    """py-spy's raw output: one "frame;frame;...;frame count" line per distinct stack."""
    stacks = []
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack:
                stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(stacks, top: int) -> tuple[dict[str, float], list[tuple[str, str, float]]]:
    """(share of all samples per kind, [(kind, source line, share of busy samples)] top lines)."""
    kinds: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()
    for frames, n in stacks:
        k = kind(frames)
        kinds[k] += n
        if k not in (IDLE, WAITING):
            lines[(k, python_caller(frames))] += n
    total = sum(kinds.values()) or 1
    busy = sum(n for k, n in kinds.items() if k not in (IDLE, WAITING)) or 1
    shares = {k: n / total for k, n in kinds.most_common()}
    top_lines = [(k, where, n / busy) for (k, where), n in lines.most_common(top)]
    return shares, top_lines


def child(mode: str, seconds: float, kernel5: int, width: float) -> None:
    """Build the bench's model, warm up, then step until ``seconds`` have passed."""
    sys.path.insert(0, HERE)
    from googlenet_speed import Runner

    from minidl.backend import keep_freed_memory

    keep_freed_memory()  # as googlenet.py train does
    runner = Runner("minidl", width, kernel5, 128, "cpu")
    step = runner.train_step if mode == "train" else runner.infer
    for _ in range(2):
        step()
    start, cpu, steps = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu  # all threads' CPU time
    print(
        f"{steps} steps, {wall / steps * 1e3:.0f} ms per step; cores busy on average: "
        f"{cpu / wall:.2f} (CPU {cpu:.1f} s over {wall:.1f} s of stepping)"
    )


def _steps_line(stdout: str) -> str:
    return next((line for line in stdout.splitlines() if " steps, " in line), "?")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--seconds", type=float, default=20.0, help="of stepping, per run")
    parser.add_argument("--kernel5", type=int, choices=[3, 5], default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="source lines to list")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.mode, args.seconds, args.kernel5, args.width)
        return 0
    spy = shutil.which("py-spy")
    if spy is None:
        print("cpu_time.py needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    me = [sys.executable, os.path.abspath(__file__), "--child", "--mode", args.mode]
    me += ["--seconds", str(args.seconds), "--kernel5", str(args.kernel5)]
    me += ["--width", str(args.width)]
    # first without py-spy: its sampling pauses the process, which slows the steps and skews
    # how busy the cores look; then sampled, for the breakdown
    plain = subprocess.run(me, capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "samples.txt")
        cmd = [spy, "record", "--native", "--format", "raw", "--rate", str(args.rate)]
        done = subprocess.run(cmd + ["-o", raw, "--", *me], capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(raw):
            print(done.stdout + done.stderr, file=sys.stderr)
            return done.returncode or 1
        stacks = read_raw(raw)
    shares, top_lines = summarise(stacks, args.top)
    config = f"width {args.width}, kernel5 {args.kernel5}, batch 128, {os.cpu_count()} cores"
    print(f"{args.mode}, {config}")
    print(f"without py-spy: {_steps_line(plain.stdout)}")
    print(f"sampled by py-spy at {args.rate} Hz: {_steps_line(done.stdout)}")
    busy = sum(v for k, v in shares.items() if k not in (IDLE, WAITING))
    print(f"\n{'kind':32s} {'of samples':>10s} {'of busy':>8s}")
    for k, v in shares.items():
        of_busy = "" if k in (IDLE, WAITING) else f"{100 * v / busy:7.1f}%"
        print(f"{k:32s} {100 * v:9.1f}% {of_busy:>8s}")
    print(f"\nbusy samples by source line (top {args.top}):")
    for k, where, v in top_lines:
        print(f"{100 * v:5.1f}%  {k:12s} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
