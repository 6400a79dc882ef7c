"""bench/googlenet_speed.py's distance-to-the-machine readout: the FLOPs it divides by.

The benchmark itself is a script (its figures depend on the machine); what it counts is not:
a training step's FLOPs must be what PyTorch's own FLOP counter counts for the same network.
"""

from __future__ import annotations

import importlib.util

import pytest
from helpers.paths import ROOT

BENCH = ROOT / "bench" / "googlenet_speed.py"


def load_bench(path=BENCH):
    """A bench/ script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_flops_count_two_per_multiply_add_and_three_gemms_in_training():
    flops = load_bench().step_flops(0.25, 3, 128)
    # the default model: 84,568,576 multiply-adds per image, 1,327,104 of them the stem's
    assert flops["infer"] == 2 * 128 * 84_568_576
    assert flops["train"] == 2 * 128 * (3 * 84_568_576 - 1_327_104)


@pytest.mark.torch
@pytest.mark.parametrize("kernel5", [3, 5])
def test_step_flops_agree_with_pytorchs_flop_counter(kernel5):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    bench = load_bench()
    model = bench.torch_googlenet_cifar(0.25, kernel5)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    with FlopCounterMode(display=False) as counter:  # convolutions and matrix products only
        torch.nn.functional.cross_entropy(model(x), y).backward()
    training = counter.get_total_flops()
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert bench.step_flops(0.25, kernel5, 2) == {
        "train": training,
        "infer": counter.get_total_flops(),
    }


@pytest.mark.parametrize("framework", ["minidl", pytest.param("torch_cl", marks=pytest.mark.torch)])
def test_op_times_put_each_op_class_in_its_row_and_add_up_to_the_step(framework):
    if framework != "minidl":
        pytest.importorskip("torch")
    bench = load_bench()
    times = bench.Runner(framework, 0.25, 3, 2, "cpu").op_times()
    assert list(times) == [*bench.OP_CLASSES, "everything else", "step"]
    # every class of the network's ops is found (a renamed op would leave its row at zero)
    assert all(times[c] > 0 for c in bench.OP_CLASSES)
    assert times["everything else"] >= 0
    assert sum(v for k, v in times.items() if k != "step") == pytest.approx(times["step"])


def test_per_class_sums_every_phase_of_an_op_and_leaves_the_rest_to_everything_else():
    bench = load_bench()
    pairs = [("Conv2d", 2.0), ("Conv2d", 3.0), ("aten::convolution_backward", 4.0),
             ("BatchNorm", 1.0), ("aten::threshold_backward", 0.5), ("aten::cat", 1.0),
             ("MaxPool2d", 1.5), ("SGD step", 7.0)]  # fmt: skip
    times = bench.per_class(pairs, wall_ms=30.0)
    assert times == {
        "convolution": 9.0,
        "batch norm + ReLU": 1.5,
        "max pooling": 1.5,
        "concat / split": 1.0,
        "everything else": 17.0,
        "step": 30.0,
    }


# ------------------------------------------------------------------ bench/cpu_time.py's sorting
def load_cpu_time():
    return load_bench(BENCH.parent / "cpu_time.py")


NUMPY = "numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"
WORKER = ["_bootstrap (threading.py:1002)", "_worker (concurrent/futures/thread.py:83)"]
STACKS = [  # (frames outermost first, count): one of each kind py-spy reports in a minidl step
    (WORKER + ["work (minidl/ops/cpu/pool_blocked.py:86)", f"FLOAT_maximum_X86_V4 ({NUMPY})"], 30),
    (
        WORKER
        + ["chunk (minidl/ops/cpu/conv_nhwc.py:186)", "sgemm_kernel_SKYLAKEX (libopenblas.so)"],
        50,
    ),
    (
        WORKER
        + [
            "work (minidl/ops/shape.py:177)",
            f"raw_array_assign_array ({NUMPY})",
            "0x7f0d98b (libc.so.6)",
        ],
        10,
    ),
    (["step (bench/googlenet_speed.py:160)", "_run_backward (minidl/tensor.py:333)"], 10),
    (
        WORKER
        + [
            "work (minidl/ops/cpu/pool_blocked.py:86)",
            f"execute_ufunc_loop ({NUMPY})",
            "pthread_cond_timedwait (libc.so.6)",
            "0x7f0da3f16 (libc.so.6)",
        ],
        20,
    ),
    (
        WORKER[:1]
        + [
            "_SimpleQueue_get_impl (_queuemodule.c:253)",
            "PyThread_acquire_lock_timed (libpython3.11.so.1.0)",
            "0x7f0dda8aed90 (libc.so.6)",
        ],
        80,
    ),
]


def test_cpu_time_sorts_each_sample_by_its_innermost_frames():
    cpu_time = load_cpu_time()
    kinds = [cpu_time.kind(frames) for frames, _ in STACKS]
    assert kinds == ["NumPy loops", "OpenBLAS", "libc", "Python", cpu_time.WAITING, cpu_time.IDLE]


def test_cpu_time_shares_and_source_lines(tmp_path):
    cpu_time = load_cpu_time()
    raw = tmp_path / "samples.txt"
    raw.write_text("".join(";".join(frames) + f" {n}\n" for frames, n in STACKS))
    stacks = cpu_time.read_raw(str(raw))
    assert stacks == [(frames, n) for frames, n in STACKS]
    shares, lines = cpu_time.summarise(stacks, top=10)
    assert shares["OpenBLAS"] == 50 / 200 and shares[cpu_time.IDLE] == 80 / 200
    # source lines: busy samples only (100), by the innermost minidl frame
    assert lines[0] == ("OpenBLAS", "chunk (minidl/ops/cpu/conv_nhwc.py:186)", 0.5)
    assert ("Python", "_run_backward (minidl/tensor.py:333)", 0.1) in lines
    assert all(kind not in (cpu_time.WAITING, cpu_time.IDLE) for kind, _, _ in lines)
