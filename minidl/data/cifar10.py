"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 colour images in 10 classes.

The official "python version" is ``cifar-10-python.tar.gz`` holding the folder
``cifar-10-batches-py/`` with five training batches ``data_batch_1`` .. ``data_batch_5``
(10,000 images each), ``test_batch`` (10,000) and ``batches.meta`` (class names). Each batch is a
pickled dict: ``data`` a uint8 array (10000, 3072) whose rows hold the red, green and blue 32x32
planes one after the other (so a row reshapes to C x H x W), and ``labels`` a list of ints 0..9.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tarfile
from typing import Any

import numpy as np

from .download import download as _download
from .download import md5sum

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
ALL_FILES = (*TRAIN_FILES, *TEST_FILES, META_FILE)


class CIFAR10:
    """The CIFAR-10 training (50,000 images) or test (10,000) set, held in memory.

    ``root`` is a folder containing ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``
    (the archive is read in place, without extracting), or that folder itself. With
    ``download=True`` and nothing found, the archive is fetched from ``url``, its MD5 checked
    against ``md5``, and extracted.

    Attributes: ``data`` uint8 (N, 32, 32, 3) NHWC, ``targets`` int64 (N,), ``classes`` (the 10
    names). ``nchw()`` gives the images as an (N, 3, 32, 32) view. ``dataset[i]`` is
    ``(image HWC, label)``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        download: bool = False,
        url: str = URL,
        md5: str | None = MD5,
    ):
        self.root, self.train = os.fspath(root), train
        source = _find(self.root)
        if source is None and download:
            source = _fetch(self.root, url, md5)
        elif download and md5 is not None and source is not None and os.path.isfile(source):
            found = md5sum(source)  # an archive already there: check it as a download would be
            if found != md5:
                raise ValueError(
                    f"{source} exists but its MD5 is {found}, not {md5} (truncated or corrupt?); "
                    f"delete it and download again"
                )
        if source is None:
            raise FileNotFoundError(_not_found_message(self.root))
        names = TRAIN_FILES if train else TEST_FILES
        raw = _read_files(source, (*names, META_FILE))
        meta = _unpickle(raw[META_FILE], _where(source, META_FILE))
        self.classes = [_text(c) for c in _get(meta, "label_names", source, META_FILE)]
        if len(self.classes) != 10:
            raise ValueError(
                f"{_where(source, META_FILE)} lists {len(self.classes)} class names, expected 10"
            )
        batches = [_checked_batch(raw[name], _where(source, name)) for name in names]
        data = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        # each row is C x H x W; store NHWC contiguous (the usual image layout, as torchvision)
        self.data = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self.targets = labels.astype(np.int64)
        self.source = source

    def nchw(self) -> np.ndarray:
        """The images as a (N, 3, 32, 32) uint8 view (no copy) of the NHWC array."""
        return self.data.transpose(0, 3, 1, 2)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.data[index], int(self.targets[index])

    def __repr__(self) -> str:
        split = "train" if self.train else "test"
        return f"CIFAR10(split={split}, images={len(self)}, source={self.source!r})"


def _find(root: str) -> str | None:
    """The batches folder or archive under ``root`` (or ``root`` itself), else None."""
    candidates = [root, os.path.join(root, FOLDER)]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, META_FILE)):
            return folder
    for archive in (root, os.path.join(root, ARCHIVE)):
        if os.path.isfile(archive) and archive.endswith((".tar.gz", ".tgz")):
            return archive
    return None


def _fetch(root: str, url: str, md5: str | None) -> str:
    folder = os.path.join(root, FOLDER)
    if os.path.exists(folder):
        raise FileExistsError(
            f"{folder} exists but has no {META_FILE} (an interrupted extraction?); it holds "
            f"{sorted(os.listdir(folder))[:10]}. Delete it and run again to download afresh"
        )
    created = _missing_folders(root)
    os.makedirs(root, exist_ok=True)
    try:
        archive = _download(url, os.path.join(root, ARCHIVE), md5, progress=True)
    except BaseException:
        for made in created:  # deepest first: leave no empty folders behind
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise
    return _extract(archive, root)


def _missing_folders(path: str) -> list[str]:
    """The folders ``os.makedirs(path)`` would create, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _extract(archive: str, root: str) -> str:
    """Extract the batch files into ``root/cifar-10-batches-py`` atomically (temp dir, rename)."""
    dest = os.path.join(root, FOLDER)
    tmp = dest + ".extracting"
    os.makedirs(tmp, exist_ok=True)
    try:
        for name, raw in _archive_members(archive, ALL_FILES).items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(raw)
        os.replace(tmp, dest)
    except BaseException:
        for name in os.listdir(tmp):
            os.remove(os.path.join(tmp, name))
        os.rmdir(tmp)
        raise
    return dest


def _archive_members(archive: str, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of ``cifar-10-batches-py/<name>`` for each name, read in one pass."""
    members: dict[str, bytes] = {}
    found = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                base = os.path.basename(info.name)
                if info.isfile() and os.path.basename(os.path.dirname(info.name)) == FOLDER:
                    found.append(base)
                    if base in names:
                        member = tar.extractfile(info)
                        assert member is not None  # a regular file (info.isfile())
                        members[base] = member.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(
            f"{archive} is not a readable tar.gz archive (truncated or corrupt?): {e}; delete it "
            f"and download it again (download=True)"
        ) from e
    missing = [n for n in names if n not in members]
    if missing:
        raise FileNotFoundError(
            f"{archive} has no {FOLDER}/{missing[0]}; it holds {sorted(found) or 'no batch files'}."
            f" Is it the official {ARCHIVE}?"
        )
    return members


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only the NumPy globals a CIFAR batch needs, so a bad file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_files(source: str, names: tuple[str, ...]) -> dict[str, bytes]:
    """The raw bytes of the named batch files, from the folder or the archive ``source``."""
    if not os.path.isdir(source):
        return _archive_members(source, names)
    missing = [n for n in names if not os.path.isfile(os.path.join(source, n))]
    if missing:
        raise FileNotFoundError(
            f"{source} lacks {missing}; it holds {sorted(os.listdir(source))}. Expected "
            f"{', '.join(ALL_FILES)}: re-extract {ARCHIVE} there, or pass download=True with a "
            f"root that has no {FOLDER} folder"
        )
    out = {}
    for name in names:
        with open(os.path.join(source, name), "rb") as f:
            out[name] = f.read()
    return out


def _where(source: str, name: str) -> str:
    return os.path.join(source, name) if os.path.isdir(source) else f"{source} ({FOLDER}/{name})"


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:
        raise ValueError(
            f"{where} is not a readable CIFAR-10 batch (truncated or corrupt?): "
            f"{type(e).__name__}: {e}; replace it with a fresh copy from {ARCHIVE}"
        ) from e
    if not isinstance(obj, dict):
        raise ValueError(f"{where} holds a {type(obj).__name__}, expected a dict")
    return {_text(k): v for k, v in obj.items()}


def _checked_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch's images, uint8 (n, 3072), and labels, int64 in 0..9, checked."""
    batch = _unpickle(raw, where)
    for key in ("data", "labels"):
        if key not in batch:
            raise ValueError(f"{where} has no {key!r} entry (keys: {sorted(batch)})")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or (data.shape[1] != 3072)
    ):
        raise ValueError(
            f"{where} holds data of shape {np.shape(data)} and dtype {getattr(data, 'dtype', '?')}"
            "; expected uint8 (N, 3072). Is this the python version of CIFAR-10?"
        )
    if labels.shape != (len(data),):
        raise ValueError(f"{where}: {len(data)} images but labels of shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected integer labels, got {labels.dtype}")
    bad = labels[(labels < 0) | (labels > 9)]
    if bad.size:
        raise ValueError(f"{where}: {bad.size} labels outside 0..9, e.g. {bad[:5].tolist()}")
    return data, labels.astype(np.int64)


def _get(d: dict, key: str, source: str, name: str) -> Any:
    if key not in d:
        raise ValueError(f"{source}: {name} has no {key!r} entry (keys: {sorted(d)})")
    return d[key]


def _text(s: Any) -> str:
    return s.decode() if isinstance(s, bytes) else str(s)


def _not_found_message(root: str) -> str:
    if not os.path.isdir(root):
        found = "the folder does not exist"
    else:
        entries = sorted(os.listdir(root))
        found = f"it holds {entries[:10]}" + (" ..." if len(entries) > 10 else "")
        if not entries:
            found = "it is empty"
    return (
        f"CIFAR-10 not found under {root!r} ({found}). Expected {root}/{FOLDER}/ with "
        f"data_batch_1..5, test_batch and batches.meta, or {root}/{ARCHIVE}. Pass "
        f"download=True to fetch it ({URL}), or point root at the folder that holds it."
    )
