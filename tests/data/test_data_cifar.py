"""CIFAR10 on a tiny data set written in the official format (pickled batches, tar.gz)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from helpers.cifar import (
    CLASSES,
    PER_BATCH,
    TEST,
    tiny_archive_bytes,
    tiny_cifar_files,
    write_folder,
)

from minidl.data import CIFAR10


def _expected(files, names):
    rows = [pickle.loads(files[n], encoding="bytes") for n in names]
    data = np.concatenate([r[b"data"] for r in rows])
    labels = np.concatenate([r[b"labels"] for r in rows])
    return data, labels


def _check(ds, files, train):
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    rows, labels = _expected(files, names)
    n = len(rows)
    assert len(ds) == n == (5 * PER_BATCH if train else TEST)
    assert ds.data.shape == (n, 32, 32, 3) and ds.data.dtype == np.uint8
    assert ds.data.flags.c_contiguous
    assert ds.targets.dtype == np.int64
    np.testing.assert_array_equal(ds.targets, labels)
    # pixel (y, x) of channel c is row[c * 1024 + y * 32 + x]
    for i, c, y, x in [(0, 0, 0, 0), (1, 2, 31, 5), (n - 1, 1, 7, 30)]:
        assert ds.data[i, y, x, c] == rows[i, c * 1024 + y * 32 + x]
    nchw = ds.nchw()
    assert nchw.shape == (n, 3, 32, 32) and np.shares_memory(nchw, ds.data)
    np.testing.assert_array_equal(nchw.reshape(n, 3072), rows)
    assert ds.classes == CLASSES
    image, label = ds[1]
    assert image.shape == (32, 32, 3) and label == labels[1] and isinstance(label, int)


@pytest.mark.parametrize("train", [True, False])
def test_reads_the_batches_folder(tmp_path, train):
    files = tiny_cifar_files()
    folder = write_folder(tmp_path, files)
    _check(CIFAR10(tmp_path, train=train), files, train)
    _check(CIFAR10(folder, train=train), files, train)  # the folder itself works too


@pytest.mark.parametrize("train", [True, False])
def test_reads_the_archive_in_place(tmp_path, train):
    files = tiny_cifar_files()
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(tiny_archive_bytes(files))
    _check(CIFAR10(tmp_path, train=train), files, train)
    _check(CIFAR10(archive, train=train), files, train)
    assert os.listdir(tmp_path) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*download=True"):
        CIFAR10(tmp_path / "nowhere")
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"other\.txt.*cifar-10-batches-py"):
        CIFAR10(tmp_path)


def test_missing_batch_file_lists_what_is_there(tmp_path):
    folder = write_folder(tmp_path)
    os.remove(os.path.join(folder, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match=r"data_batch_3.*data_batch_2"):
        CIFAR10(tmp_path)
    CIFAR10(tmp_path, train=False)  # the test split is complete


def test_truncated_batch_names_the_file(tmp_path):
    folder = write_folder(tmp_path)
    path = os.path.join(folder, "data_batch_2")
    raw = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="data_batch_2.*truncated or corrupt"):
        CIFAR10(tmp_path)


def test_pickle_cannot_run_code(tmp_path):
    files = tiny_cifar_files()
    files["test_batch"] = pickle.dumps({b"data": os.getcwd}, protocol=2)  # a global call
    write_folder(tmp_path, files)
    with pytest.raises(ValueError, match="refusing"):
        CIFAR10(tmp_path, train=False)


def test_truncated_archive_names_the_file(tmp_path):
    raw = tiny_archive_bytes()
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz.*truncated or corrupt"):
        CIFAR10(tmp_path)


def test_archive_without_batches(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(tiny_archive_bytes({"readme.txt": b"hello"}))
    with pytest.raises(FileNotFoundError, match="official"):
        CIFAR10(tmp_path)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 1, 10, 2], r"data_batch_2.*labels outside 0\.\.9.*10"),
        ([0, -1, 3, 2], r"data_batch_2.*labels outside 0\.\.9.*-1"),
        ([0.5, 1, 2, 3], r"data_batch_2.*integer labels"),
        ([[0], [1], [2], [3]], r"data_batch_2.*labels of shape \(4, 1\)"),
    ],
)
def test_labels_are_checked_when_loaded(tmp_path, labels, message):
    files = tiny_cifar_files()
    batch = pickle.loads(files["data_batch_2"], encoding="bytes")
    batch[b"labels"] = labels
    files["data_batch_2"] = pickle.dumps(batch, protocol=2)
    write_folder(tmp_path, files)
    with pytest.raises(ValueError, match=message):
        CIFAR10(tmp_path, train=True)


def test_class_names_and_batch_shapes_are_checked(tmp_path):
    files = tiny_cifar_files()
    meta = pickle.loads(files["batches.meta"], encoding="bytes")
    meta[b"label_names"] = meta[b"label_names"][:9]
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    write_folder(tmp_path / "nine", files)
    with pytest.raises(ValueError, match=r"batches.meta.*9 class names, expected 10"):
        CIFAR10(tmp_path / "nine", train=False)
    files = tiny_cifar_files()
    batch = pickle.loads(files["test_batch"], encoding="bytes")
    batch[b"data"] = batch[b"data"][:, :3000]
    files["test_batch"] = pickle.dumps(batch, protocol=2)
    write_folder(tmp_path / "short", files)
    with pytest.raises(ValueError, match=r"test_batch.*\(6, 3000\)"):
        CIFAR10(tmp_path / "short", train=False)
