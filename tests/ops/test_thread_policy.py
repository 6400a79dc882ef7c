"""The thread policy (``minidl.ops.cpu.threads``): fewer threads while other programs keep
cores busy.

The load is faked (an injected CPU-time reader and clock), so every decision is deterministic;
the speed it buys is measured in bench/under_load.py, never here. The parallel helpers must give
identical results whichever count the policy picks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.ops.cpu import parallel, pool_blocked, threads
from minidl.ops.cpu.threads import OpenBLAS, ThreadPolicy, machine_busy_s, threads_for


class FakeMachine:
    """A clock and CPU-time counters the test advances: ``run(seconds, others, own)`` lets
    ``seconds`` pass while other programs use ``others`` cores and this process ``own``."""

    def __init__(self):
        self.now, self.machine, self.own, self.reads = 100.0, 5000.0, 10.0, 0

    def clock(self) -> float:
        return self.now

    def read_cpu(self) -> tuple[float, float]:
        self.reads += 1
        return self.machine, self.own

    def run(self, seconds: float, others: float, own: float) -> None:
        self.now += seconds
        self.machine += seconds * (others + own)
        self.own += seconds * own


class FakeBLAS(OpenBLAS):
    def __init__(self, initial: int = 2):
        self.calls: list[int] = []
        super().__init__(self.calls.append, lambda: initial)


def policy_on(machine: FakeMachine, maximum: int = 2, **kw) -> ThreadPolicy:
    return ThreadPolicy(maximum, read_cpu=machine.read_cpu, clock=machine.clock, **kw)


def test_machine_busy_time_counts_all_but_idle_and_iowait():
    tck = os.sysconf("SC_CLK_TCK")
    stat = "cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 50 2 25 500 10 1 1 5 0 0\n"
    assert machine_busy_s(stat) == pytest.approx((100 + 5 + 50 + 3 + 2 + 10) / tck)
    with pytest.raises(ValueError, match="cpu"):
        machine_busy_s("intr 1 2 3\n")


@pytest.mark.parametrize(
    "others, maximum, cpus, expected",
    [(0.0, 2, 2, 2), (0.4, 2, 2, 2), (0.6, 2, 2, 1), (1.0, 2, 2, 1), (2.0, 2, 2, 1),
     (1.0, 8, 8, 7), (3.2, 8, 8, 5), (0.0, 4, 8, 4), (9.0, 8, 8, 1)],
)  # fmt: skip
def test_threads_leave_other_programs_their_cores(others, maximum, cpus, expected):
    assert threads_for(others, maximum, cpus) == expected


def test_policy_follows_the_load_and_keeps_openblas_in_step(monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 2)
    m, blas = FakeMachine(), FakeBLAS()
    policy = policy_on(m, blas=blas)
    assert policy.threads() == 2  # the first call only starts a sample
    m.run(0.6, others=0.1, own=1.9)
    assert policy.threads() == 2 and blas.calls == []  # idle machine: all threads
    m.run(0.6, others=1.8, own=0.2)  # two busy programs appear
    assert policy.threads() == 1 and blas.calls == [1]
    assert policy.others == pytest.approx(1.8)
    reads = m.reads
    m.run(0.2, others=1.0, own=0.0)
    assert policy.threads() == 1 and m.reads == reads  # re-sampled at most every RECHECK_S
    m.run(0.6, others=0.0, own=1.0)  # they are gone
    assert policy.threads() == 2 and blas.calls == [1, 2]


def test_a_pause_starts_a_new_sample_without_changing_the_counts(monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 2)
    m = FakeMachine()
    policy = policy_on(m)
    policy.threads()
    m.run(30.0, others=2.0, own=0.0)  # this process waited (another took its turn)
    assert policy.threads() == 2
    m.run(0.6, others=0.0, own=2.0)
    assert policy.threads() == 2
    m.run(0.6, others=2.0, own=0.0)
    assert policy.threads() == 1


def test_fixed_counts_are_left_alone(monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 2)
    m, blas = FakeMachine(), FakeBLAS()
    policy = policy_on(m, adapt=False, blas=blas)  # MINIDL_THREADS given, OpenBLAS's not
    policy.threads()
    m.run(0.6, others=2.0, own=0.0)
    assert policy.threads() == 2 and blas.calls == [1]
    fixed = policy_on(FakeMachine(), adapt=False)  # both fixed: the load is never read
    assert fixed.threads() == 2 and fixed.read_cpu.__self__.reads == 0


def test_openblas_never_gets_more_threads_than_it_started_with(monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 4)
    m, blas = FakeMachine(), FakeBLAS(initial=2)
    policy = policy_on(m, maximum=4, blas=blas)
    policy.threads()
    m.run(0.6, others=1.0, own=3.0)
    assert policy.threads() == 3 and blas.calls == []  # min(2, 3): unchanged


def test_without_proc_the_policy_runs_as_configured():
    def no_proc():
        raise OSError("no /proc/stat")

    policy = ThreadPolicy(2, blas=FakeBLAS(), read_cpu=no_proc)
    assert policy.threads() == 2 and not policy.adapt and policy.blas is None


def test_environment_knobs_fix_the_counts(monkeypatch):
    monkeypatch.setattr(parallel, "policy", None)
    monkeypatch.setenv("MINIDL_THREADS", "2")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    policy = parallel._get_policy()
    assert not policy.adapt and policy.blas is None
    monkeypatch.setattr(parallel, "policy", None)
    monkeypatch.delenv("MINIDL_THREADS")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GOTO_NUM_THREADS", raising=False)
    assert parallel._get_policy().adapt


def test_numpys_openblas_is_found_and_its_count_set():
    blas = OpenBLAS.find()
    if blas is None:
        pytest.skip("NumPy is not linked to a loaded OpenBLAS here")
    try:
        blas.set(1)
        assert blas._get() == 1
    finally:
        blas.set(blas.initial)
    assert blas._get() == blas.initial


def test_no_openblas_among_the_loaded_libraries(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libm.so.6\n")
    assert OpenBLAS.find(str(maps)) is None
    assert OpenBLAS.find(str(tmp_path / "absent")) is None


class NoPool:
    def submit(self, *args):
        raise AssertionError("the pool was used while the policy said one thread")


def _pool_forward_backward(x, gy):
    t = md.Tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 3, 1, 1)
    y.backward(md.Tensor(gy))
    return y.numpy(), t.grad.numpy()


def test_a_busy_machine_runs_the_passes_on_one_thread_with_the_same_results(monkeypatch):
    monkeypatch.setattr(threads, "CPUS", 2)
    monkeypatch.setattr(parallel, "WORKERS", 2)
    monkeypatch.setattr(parallel, "_MIN_ELEMENTS", 1)
    monkeypatch.setattr(pool_blocked, "_BLOCK_BYTES", 1)  # a block per image: several tasks
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 8, 8)).transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
    gy = rng.standard_normal(x.shape)
    monkeypatch.setattr(parallel, "policy", ThreadPolicy(2, adapt=False))
    two = _pool_forward_backward(x, gy)
    m = FakeMachine()
    busy = policy_on(m)
    busy.threads()
    m.run(0.6, others=2.0, own=0.0)
    assert busy.threads() == 1
    monkeypatch.setattr(parallel, "policy", busy)
    monkeypatch.setattr(parallel, "_pool", NoPool())
    one = _pool_forward_backward(x, gy)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_the_pools_thread_count_leaves_a_training_steps_gradients_bit_for_bit(monkeypatch):
    """Only OpenBLAS's count changes rounding (docs/training.md); the pool's chunks never do, so
    a step of the CIFAR GoogLeNet gives the same bits on one thread and on two."""
    import googlenet as G

    monkeypatch.setattr(parallel, "WORKERS", 2)
    monkeypatch.setattr(parallel, "_MIN_ELEMENTS", 1)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 4)

    def gradients(threads):
        monkeypatch.setattr(parallel, "policy", ThreadPolicy(threads, adapt=False))
        md.nn.init.manual_seed(0)
        np.random.seed(0)  # the dropout mask
        model = G.googlenet_cifar(width=0.125, kernel5=3)
        F.cross_entropy(model(md.tensor(x)), md.tensor(y)).backward()
        return [p.grad.numpy() for p in model.parameters()]

    for one, two in zip(gradients(1), gradients(2)):
        np.testing.assert_array_equal(one, two)
