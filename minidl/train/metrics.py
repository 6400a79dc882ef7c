"""What a run measured: per-epoch rows written as ``metrics.csv`` and ``metrics.json``, and the
confusion matrix of a classifier's predictions (``minidl.viz.plot_confusion`` draws it)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..serialization import atomic_open


def write_metrics(rows: Sequence[dict[str, Any]], folder: str | os.PathLike) -> None:
    """Write the per-epoch rows as ``<folder>/metrics.json`` and ``<folder>/metrics.csv``
    (atomically: an interrupted run never leaves a half-written file)."""
    with atomic_open(os.path.join(folder, "metrics.json")) as f:
        f.write((json.dumps(list(rows), indent=1) + "\n").encode())
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(os.path.join(folder, "metrics.csv")) as f:
        f.write(text.getvalue().encode())


def confusion_matrix(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(targets), np.asarray(predictions)), 1)
    return m


def format_confusion(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """The confusion matrix as text: rows are true classes, columns predicted."""
    short = [c[:5] for c in classes]
    width = max(5, len(str(matrix.max())))
    head = " " * 12 + " ".join(s.rjust(width) for s in short)
    lines = [head]
    for name, row in zip(classes, matrix):
        lines.append(f"{name[:11]:<11} " + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)
