"""md.save / md.load: round trips, atomic writes, clear errors on bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest

import minidl as md


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
