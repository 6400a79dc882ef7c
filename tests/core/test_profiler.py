"""The per-op profiler sees every op's forward and backward, and costs nothing when off."""

from __future__ import annotations

import numpy as np

import minidl as md
from minidl import function
from minidl.profiler import profile


def test_profile_times_forward_and_backward_per_op():
    x = md.tensor(np.random.default_rng(0).standard_normal((8, 4)), requires_grad=True)
    with profile() as prof:
        for _ in range(3):
            md.F.relu(x @ x.T).sum().backward()
    assert prof.calls["MatMul", "forward"] == 3 and prof.calls["MatMul", "backward"] == 3
    assert prof.calls["ReLU", "backward"] == 3
    table = prof.table()
    assert "MatMul" in table and "all ops" in table
    assert function.op_timer is None  # switched off again after the block
