"""The one switch between the textbook paths and the fast CPU paths (``minidl.ops.dispatch``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl.ops.dispatch import TEXTBOOK_ENV


def _paths_taken() -> dict[str, bool]:
    """Whether conv2d, max pooling, average pooling and batch norm took their fast paths."""
    rng = np.random.default_rng(0)
    x = md.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    w = md.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = F.conv2d(x, w, padding=1)  # a channels-last view: batch norm's fast path serves it
    ops = {
        "conv2d": y,
        "max_pool2d": F.max_pool2d(y, 3, 1, 1),
        "avg_pool2d": F.avg_pool2d(y, 3, 1, 1),
        "batch_norm": F.batch_norm(
            y, np.zeros(4, np.float32), np.ones(4, np.float32), training=True
        ),  # fmt: skip
    }
    return {name: out.creator.fast for name, out in ops.items()}


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    monkeypatch.delenv(TEXTBOOK_ENV, raising=False)


def test_numpy_takes_the_fast_paths_by_default():
    assert all(_paths_taken().values()), _paths_taken()


def test_the_context_manager_sends_every_op_down_its_textbook_path_and_nests():
    with md.textbook():
        assert not any(_paths_taken().values())
        with md.textbook(False):
            assert all(_paths_taken().values())
        assert not any(_paths_taken().values())
    assert all(_paths_taken().values())


def test_the_environment_variable_does_the_same_and_the_context_manager_overrides_it(
    monkeypatch,
):
    monkeypatch.setenv(TEXTBOOK_ENV, "1")
    assert not any(_paths_taken().values())
    with md.textbook(False):
        assert all(_paths_taken().values())
    monkeypatch.setenv(TEXTBOOK_ENV, "0")
    assert all(_paths_taken().values())


STEP_THEN_MODULES = """
import sys
import numpy as np
import minidl as md
import minidl.functional as F

rng = np.random.default_rng(0)
x = md.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
w = md.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
y = F.conv2d(x, w, padding=1)
y = F.batch_norm(y, np.zeros(4, np.float32), np.ones(4, np.float32), training=True)
y = md.concat([F.max_pool2d(y, 3, 1, 1), F.avg_pool2d(y, 3, 1, 1)], 1)
y.sum().backward()
print(sorted(m for m in sys.modules if m.startswith("minidl.ops.cpu")))
"""


@pytest.mark.parametrize("textbook", ["1", "0"])
def test_the_textbook_never_loads_the_fast_paths_or_the_thread_pool(textbook):
    """With MINIDL_TEXTBOOK=1 a step through every image op imports nothing of minidl.ops.cpu
    (its modules are loaded at their first use); without it, they are what ran."""
    env = dict(os.environ, **{TEXTBOOK_ENV: textbook})
    run = subprocess.run([sys.executable, "-c", STEP_THEN_MODULES], capture_output=True,
                         text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    loaded = run.stdout.strip()
    if textbook == "1":
        assert loaded == "[]"
    else:
        fast = ("conv_nhwc", "pool_blocked", "batchnorm_nhwc", "channels", "parallel", "threads")
        for module in fast:
            assert f"'minidl.ops.cpu.{module}'" in loaded
