"""The .pth reader, on zip archives built here opcode by opcode (no PyTorch needed).

A tiny pickle writer emits exactly what ``torch.save`` writes for a state dict: an
``OrderedDict`` whose values are ``torch._utils._rebuild_tensor_v2(<persistent storage id>,
offset, size, stride, requires_grad, hooks)`` calls. When PyTorch is installed, a last test
compares against a real ``torch.save``.
"""

from __future__ import annotations

import collections
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest
from helpers.pth_files import PickleWriter, write_archive

from minidl.pth import load_pth, load_state_dict


def test_state_dict_with_views_dtypes_and_shared_storage(tmp_path):
    weight = np.arange(24, dtype=np.float32)  # storage 0, viewed by two tensors
    halves = np.array([0.5, -2.0, 3.25], dtype=np.float16)
    w = PickleWriter()
    pkl = w.state_dict(
        [
            # a 2x3 block starting at element 2 of a (4 x 6) row-major layout: rows 0..1, cols 2..4
            ("conv.weight", lambda: w.tensor("FloatStorage", "0", 24, 2, (2, 3), (6, 1))),
            # the transpose of the first 3 x 4 elements: size (4, 3), stride (1, 4)
            ("fc.weight", lambda: w.tensor("FloatStorage", "0", 24, 0, (4, 3), (1, 4))),
            ("bn.num_batches_tracked", lambda: w.tensor("LongStorage", "1", 1, 0, (), ())),
            ("half", lambda: w.tensor("HalfStorage", "2", 3, 0, (3,), (1,))),
            ("empty", lambda: w.tensor("FloatStorage", "3", 0, 0, (0, 5), (5, 1))),
        ]
    )
    path = tmp_path / "weights.pth"
    storages = {"0": weight.tobytes(), "1": np.int64(7).tobytes(), "2": halves.tobytes(), "3": b""}
    write_archive(path, pkl, storages)

    sd = load_state_dict(path)
    assert list(sd) == ["conv.weight", "fc.weight", "bn.num_batches_tracked", "half", "empty"]
    np.testing.assert_array_equal(sd["conv.weight"], weight.reshape(4, 6)[:2, 2:5])
    np.testing.assert_array_equal(sd["fc.weight"], weight[:12].reshape(3, 4).T)
    assert sd["bn.num_batches_tracked"].dtype == np.int64 and sd["bn.num_batches_tracked"] == 7
    assert sd["bn.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(sd["half"], halves)
    assert sd["half"].dtype == np.float16
    assert sd["empty"].shape == (0, 5)
    for v in sd.values():  # each array owns its memory: no view into the archive's bytes
        assert v.flags.owndata and v.flags.writeable


def test_untyped_storage_v3_bfloat16_and_big_endian(tmp_path):
    values = np.array([1.5, -3.0, 0.15625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # exact: these floats fit in bfloat16
    w = PickleWriter()
    pkl = w.state_dict(
        [
            ("u", lambda: w.tensor("UntypedStorage", "0", 12, 0, (3,), (1,), dtype="float32")),
            ("b", lambda: w.tensor("BFloat16Storage", "1", 3, 0, (3,), (1,))),
        ]
    )
    write_archive(tmp_path / "a.pth", pkl, {"0": values.tobytes(), "1": bf16.tobytes()})
    sd = load_pth(tmp_path / "a.pth")
    np.testing.assert_array_equal(sd["u"], values)
    np.testing.assert_array_equal(sd["b"], values)
    assert sd["b"].dtype == np.float32

    big = PickleWriter()
    pkl = big.state_dict([("x", lambda: big.tensor("DoubleStorage", "0", 2, 0, (2,), (1,)))])
    raw = np.array([1.25, -7.0], dtype=">f8").tobytes()
    write_archive(tmp_path / "big.pth", pkl, {"0": raw}, byteorder="big")
    x = load_pth(tmp_path / "big.pth")["x"]
    np.testing.assert_array_equal(x, [1.25, -7.0])
    assert x.dtype == np.float64 and x.dtype.isnative


def test_refuses_arbitrary_globals(tmp_path):
    w = PickleWriter()
    w.glob("os", "system")
    w.mark()
    w.str("echo pwned")
    w.tuple()
    w.out += b"R."
    write_archive(tmp_path / "evil.pth", bytes(w.out), {})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        load_pth(tmp_path / "evil.pth")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_pth(tmp_path / "absent.pth")
    not_zip = tmp_path / "old.pth"
    not_zip.write_bytes(b"\x80\x02 legacy torch format")
    with pytest.raises(ValueError, match="not a PyTorch zip archive"):
        load_pth(not_zip)

    w = PickleWriter()
    pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "9", 4, 0, (4,), (1,)))])
    write_archive(tmp_path / "missing.pth", pkl, {})
    with pytest.raises(pickle.UnpicklingError, match="storage '9' is missing"):
        load_pth(tmp_path / "missing.pth")

    w = PickleWriter()
    pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "0", 4, 2, (4,), (1,)))])
    write_archive(tmp_path / "outside.pth", pkl, {"0": np.zeros(4, np.float32).tobytes()})
    with pytest.raises(pickle.UnpicklingError, match="reaches outside its storage"):
        load_pth(tmp_path / "outside.pth")


@pytest.mark.torch
def test_matches_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    sd = collections.OrderedDict(
        a=torch.randn(3, 4, 5, generator=g),
        view=base[1:5, ::2],  # offset and strides into a larger storage
        t=base.t(),  # shares the storage above
        n=torch.tensor(12345678901, dtype=torch.int64),
        h=torch.randn(7, generator=g).half(),
        bf=torch.randn(5, generator=g).bfloat16(),
        p=torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    )
    path = tmp_path / "real.pth"
    torch.save(sd, path)
    ours = load_pth(path)
    assert list(ours) == list(sd)
    for key, value in sd.items():
        expected = value.detach().float().numpy() if key == "bf" else value.detach().numpy()
        np.testing.assert_array_equal(ours[key], expected, err_msg=key)
        assert ours[key].dtype == expected.dtype, key


# ---------------------------------------------------------------- hostile files (bounded loading)
def test_a_zero_stride_cannot_make_a_tiny_file_allocate_gigabytes(tmp_path):
    """A 2**15 x 2**16 tensor of float32s (8 GiB) viewing one stored element with strides 0."""
    w = PickleWriter()
    shape = (2**15, 2**16)
    pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "0", 1, 0, shape, (0, 0)))])
    path = tmp_path / "tiny.pth"
    write_archive(path, pkl, {"0": np.zeros(1, np.float32).tobytes()})
    assert path.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"tiny.pth.*2147483648 elements"):
            load_pth(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_a_compressed_storage_expands_only_up_to_the_limit(tmp_path):
    w = PickleWriter()
    pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "0", 1 << 18, 0, (4,), (1,)))])
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w/data.pkl", pkl)
        z.writestr("w/data/0", bytes(1 << 20), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"bomb.pth.*max_bytes"):
        load_pth(path, max_bytes=100_000)
    assert load_pth(path)["x"].shape == (4,)


@pytest.mark.parametrize("case", ["few-arguments", "size-not-ints", "truncated", "bad-offset"])
def test_every_content_error_is_a_value_error_naming_the_file(tmp_path, case):
    w = PickleWriter()
    if case == "few-arguments":  # _rebuild_tensor_v2() called with one argument: a TypeError
        w.glob("torch._utils", "_rebuild_tensor_v2")
        w.mark()
        w.int(1)
        w.tuple()
        w.out += b"R."
        pkl = bytes(w.out)
    elif case == "size-not-ints":
        pkl = w.state_dict([("x", lambda: (w.glob("torch._utils", "_rebuild_tensor_v2"),
                                           w.mark(), w.storage_id("FloatStorage", "0", 1),
                                           w.int(0), w.str("ab"), w.str("cd"), w.tuple(),
                                           w.out.extend(b"R")))])  # fmt: skip
    elif case == "truncated":
        pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "0", 1, 0, (1,), (1,)))])[:-9]
    else:
        pkl = w.state_dict([("x", lambda: w.tensor("FloatStorage", "0", 1, -1, (1,), (1,)))])
    path = tmp_path / "odd.pth"
    write_archive(path, pkl, {"0": np.zeros(1, np.float32).tobytes()})
    with pytest.raises(ValueError, match="odd.pth"):
        load_pth(path)
