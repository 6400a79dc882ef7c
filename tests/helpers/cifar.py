"""Tiny data sets in the CIFAR-10 python version's format (pickled batches, a tar.gz of them).

Three flavours, each for what its tests need: ``write_cifar`` learnable images (a colour per
class) for command-line runs that must learn; ``write_tiny_cifar`` random images with labels
0..9 in turn, for the lessons; ``tiny_cifar_files`` the official files byte for byte (batch
labels, file names), for the reader and the download."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_META = {b"label_names": [c.encode() for c in CLASSES]}  # batches.meta, as the writers need it


PER_BATCH, TEST = 4, 6


def _batch(rng, n, name):
    # as the official Python-2 pickles read with encoding="bytes": bytes keys, uint8 rows of
    # 3072 values (R plane, G plane, B plane), labels a list of ints
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def tiny_cifar_files(seed: int = 0) -> dict[str, bytes]:
    """The files of a tiny ``cifar-10-batches-py`` folder: name -> pickled bytes."""
    rng = np.random.default_rng(seed)
    files = {
        f"data_batch_{i}": _batch(rng, PER_BATCH, f"training batch {i} of 5") for i in range(1, 6)
    }
    files["test_batch"] = _batch(rng, TEST, "testing batch 1 of 1")
    files["batches.meta"] = {
        b"label_names": [c.encode() for c in CLASSES],
        b"num_cases_per_batch": PER_BATCH,
        b"num_vis": 3072,
    }
    return {name: pickle.dumps(obj, protocol=2) for name, obj in files.items()}


def write_folder(root, files=None) -> str:
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    for name, raw in (files or tiny_cifar_files()).items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(raw)
    return folder


def tiny_archive_bytes(files=None) -> bytes:
    """A tiny ``cifar-10-python.tar.gz`` (same member layout as the official archive)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in (files or tiny_cifar_files()).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def write_cifar(root, n_train=64, n_test=40, seed=0) -> str:
    """A CIFAR-10 python-version folder: 5 training batches, a test batch and the meta file.

    Images are noise plus a per-class colour, so the classes can actually be learnt."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)

    def batch(n):
        labels = rng.integers(0, 10, n)
        colour = (labels[:, None] * 25).astype(np.int64)
        data = np.clip(rng.integers(0, 60, (n, 3072)) + colour, 0, 255).astype(np.uint8)
        return {b"data": data, b"labels": labels.tolist()}

    batches = {f"data_batch_{i}": batch(n_train // 5) for i in range(1, 6)}
    _write_pickles(folder, {**batches, "test_batch": batch(n_test), "batches.meta": _META})
    return root


def write_tiny_cifar(folder: Path, per_batch: int = 20, seed: int = 0) -> Path:
    """A CIFAR-10 'python version' folder in the real format, with a few random images per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {
        name: {
            b"batch_label": name.encode(),
            b"labels": [int(i % 10) for i in range(per_batch)],
            b"data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
        }
        for name in names
    }
    _write_pickles(folder, {**batches, "batches.meta": _META})
    return folder


def _write_pickles(folder, objects: dict) -> None:
    """Each ``name: object`` pickled into ``folder`` as the official files are (protocol 2)."""
    for name, obj in objects.items():
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(obj, f, protocol=2)
