"""Every lesson in examples/ runs, in quick mode, as a learner runs it: ``python examples/NN_*.py``.

Pictures go to a temporary folder (``MINIDL_EXAMPLES_OUTPUT``) so the tests leave nothing behind,
and the training lesson reads a tiny generated CIFAR-10-format set (``MINIDL_CIFAR10``) so CI never
needs the real data.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "examples").glob("[0-9][0-9]_*.py"))


def write_tiny_cifar(folder: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A CIFAR-10 'python version' folder in the real format, with a few random images per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    for name in [*names, "test_batch"]:
        labels = [int(i % 10) for i in range(per_batch)]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f)
    classes = ["airplane", "automobile", "bird", "cat", "deer"]
    classes += ["dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in classes]}, f)
    return folder


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    return write_tiny_cifar(tmp_path_factory.mktemp("data") / "cifar-10-batches-py")


def test_lessons_found():
    assert len(LESSONS) >= 1
    numbers = [p.name[:2] for p in LESSONS]
    assert numbers == sorted(set(numbers)), "lesson numbers must be unique"


def test_lessons_import_the_installed_package():
    """No lesson puts the checkout on sys.path or reads files outside it: ``googlenet`` and
    ``minidl`` come from ``pip install -e .``, as a learner's copy has them."""
    for path in [*LESSONS, ROOT / "examples" / "_lesson.py"]:
        text = path.read_text()
        assert "sys.path" not in text, path.name
        assert '"shared"' not in text and "../shared" not in text, path.name


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_quick(lesson: Path, tmp_path: Path, tiny_cifar: Path):
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path), MINIDL_CIFAR10=str(tiny_cifar))
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run(
        [sys.executable, str(lesson), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{lesson.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip(), f"{lesson.name} printed nothing"
    pictures = list(tmp_path.glob("*.png"))
    if "SKIPPED:" in proc.stdout:  # e.g. the GPU lesson on a machine without a GPU
        return
    assert pictures, f"{lesson.name} wrote no PNG to {tmp_path}"
    for picture in pictures:
        assert picture.stat().st_size > 1000, f"{picture.name} looks empty"
