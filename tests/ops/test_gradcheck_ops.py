"""Every registered op's backward against central differences (float64, random upstream grad)."""

from __future__ import annotations

import pytest

import minidl  # noqa: F401  (registers every op's cases)
from minidl.gradcheck import check_grad
from minidl.registry import gradcheck_cases

CASES = gradcheck_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.label}" for c in CASES])
def test_gradcheck(case, xp):
    inputs = [xp.asarray(a) for a in case.inputs]
    check_grad(case.fn, inputs, tol=case.tol, eps=case.eps)
