"""The lessons in examples/ and how a learner runs one: `python examples/NN_*.py` from the root."""

from __future__ import annotations

import subprocess
import sys

from helpers.paths import ROOT

LESSONS = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository's root, as a learner runs a lesson."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
