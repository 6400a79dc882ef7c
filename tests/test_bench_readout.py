"""bench/googlenet_speed.py's distance-to-the-machine readout: the FLOPs it divides by.

The benchmark itself is a script (its figures depend on the machine); what it counts is not:
a training step's FLOPs must be what PyTorch's own FLOP counter counts for the same network.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "googlenet_speed.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("googlenet_speed", BENCH)
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
