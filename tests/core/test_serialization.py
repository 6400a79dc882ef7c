"""md.save / md.load: round trips, atomic writes, clear errors on bad files."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import minidl as md
from minidl.serialization import remove_stale_temp_files


def test_checkpoint_round_trip(tmp_path, xp):
    ckpt = {
        "epoch": 3,
        "best": 0.875,
        "nan": float("nan"),
        "name": "googlenet",
        "flag": True,
        "none": None,
        "model": {"fc.weight": md.Tensor(xp.arange(6, dtype=xp.float32).reshape(2, 3))},
        "optimizer": {
            "state": {0: {"step": 2, "exp_avg": xp.ones(3)}},
            "param_groups": [{"lr": 0.1}],
        },
        "history": [1.5, 1.25],
        "betas": (0.9, 0.999),
        "scalar": np.float32(2.5),
        "ints": np.arange(4, dtype=np.int64),
    }
    path = tmp_path / "ckpt.npz"
    md.save(ckpt, path)
    back = md.load(path)
    assert back["epoch"] == 3 and isinstance(back["epoch"], int)
    assert back["best"] == 0.875 and np.isnan(back["nan"])
    assert back["name"] == "googlenet" and back["flag"] is True and back["none"] is None
    w = back["model"]["fc.weight"]
    assert isinstance(w, md.Tensor) and w.device == "cpu" and w.dtype == np.float32
    np.testing.assert_array_equal(w.numpy(), np.arange(6).reshape(2, 3))
    state = back["optimizer"]["state"]
    assert list(state) == [0]  # int keys stay ints
    assert isinstance(state[0]["exp_avg"], np.ndarray) and state[0]["exp_avg"].dtype == np.float64
    assert back["history"] == [1.5, 1.25] and back["betas"] == (0.9, 0.999)
    assert back["scalar"] == np.float32(2.5) and back["scalar"].dtype == np.float32
    assert back["ints"].dtype == np.int64
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left


def test_save_failure_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "ckpt.npz"
    md.save({"a": np.ones(2)}, path)
    with pytest.raises(TypeError, match="object"):
        md.save({"a": np.ones(2), "bad": object()}, path)
    with pytest.raises(TypeError, match="object arrays"):
        md.save({"bad": np.array([object()])}, path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    np.testing.assert_array_equal(md.load(path)["a"], np.ones(2))


def test_truncated_and_corrupt_files_name_the_path(tmp_path):
    path = tmp_path / "ckpt.npz"
    md.save({"w": np.random.default_rng(0).standard_normal(10000)}, path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        md.load(cut)
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF  # inside the array data: the zip CRC catches it
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="bad.npz"):
        md.load(bad)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        md.load(garbage)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        md.load(tmp_path / "missing.npz")


def test_plain_npz_loads_as_a_dict(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.ones(2), b=np.zeros(3))
    back = md.load(path)
    assert set(back) == {"a", "b"}


# ---------------------------------------------------------------- hostile files (bounded loading)
def npy_bytes(header_shape, data: bytes, dtype="<f4") -> bytes:
    """A .npy member whose header declares ``header_shape`` but whose data is ``data``."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(header_shape)}
    text = repr(header).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def zip_with(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    return path


def peak_allocation(fn):
    """The largest traced allocation total while ``fn()`` runs (NumPy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_header_that_declares_gigabytes_is_refused_before_allocating(tmp_path):
    """A few bytes whose .npy header declares a (2**31,) float32 array (8 GiB)."""
    path = zip_with(tmp_path / "liar.npz", {"w.npy": npy_bytes((2**31,), b"\0" * 64)})

    def load():
        with pytest.raises(ValueError, match="liar.npz") as caught:
            md.load(path)
        assert "declares" in str(caught.value)

    assert peak_allocation(load) < 10 * 2**20


def test_compressed_members_expand_only_up_to_the_stated_limit(tmp_path):
    raw = npy_bytes((1 << 18,), bytes(1 << 20))  # 1 MiB of zeros: deflates to ~1 KiB
    path = zip_with(tmp_path / "bomb.npz", {"w.npy": raw}, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 10_000
    with pytest.raises(ValueError, match=r"bomb.npz.*max_bytes"):
        md.load(path, max_bytes=100_000)
    assert md.load(path)["w"].shape == (1 << 18,)  # the default limit allows it


def test_a_member_larger_than_its_declared_size_is_refused(tmp_path):
    raw = npy_bytes((4,), b"\0" * 32)  # 4 float32s declared, 8 present
    with pytest.raises(ValueError, match="extra.npz"):
        md.load(zip_with(tmp_path / "extra.npz", {"w.npy": raw}))


def test_a_plain_npy_file_is_a_value_error_naming_it(tmp_path):
    np.save(tmp_path / "array.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"array.npy.*\.npy"):
        md.load(tmp_path / "array.npy")


def structure_file(path, structure: bytes, arrays=None):
    members = {"__minidl__.npy": npy_bytes((len(structure),), structure, "|u1")}
    members.update(arrays or {})
    return zip_with(path, members)


def test_deep_nesting_is_refused_without_recursing(tmp_path):
    deep = b'{"format": 1, "root": ' + b'{"list": [' * 100_000 + b"]}" * 100_000 + b"}"
    with pytest.raises(ValueError, match=r"deep.npz.*nest"):
        md.load(structure_file(tmp_path / "deep.npz", deep))


@pytest.mark.parametrize(
    "root",
    [b'{"dict": 5}', b'{"dict": [[1]]}', b'{"array": 7}', b'{"array": "nope"}', b"{}", b"[1, 2"],
)
def test_malformed_structures_are_value_errors(tmp_path, root):
    text = b'{"format": 1, "root": ' + root + b"}"
    with pytest.raises(ValueError, match="bad.npz"):
        md.load(structure_file(tmp_path / "bad.npz", text))


def test_saving_a_nest_too_deep_is_refused(tmp_path):
    nest: list = []
    for _ in range(200):
        nest = [nest]
    with pytest.raises(ValueError, match="deep"):
        md.save(nest, tmp_path / "n.npz")
    assert os.listdir(tmp_path) == []


def test_files_are_created_with_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        md.save({"a": np.ones(2)}, tmp_path / "a.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o640  # mkstemp's 0o600 before


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    (tmp_path / f".last.npz.{dead_pid}.0123abcd.tmp").write_bytes(b"half")
    (tmp_path / f".best.npz.{os.getpid()}.89abcdef.tmp").write_bytes(b"being written")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    assert remove_stale_temp_files(tmp_path) == [f".last.npz.{dead_pid}.0123abcd.tmp"]
    assert sorted(os.listdir(tmp_path)) == [
        f".best.npz.{os.getpid()}.89abcdef.tmp",
        "keep.tmp",
    ]
