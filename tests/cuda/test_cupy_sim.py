"""The simulated CuPy's own rules: each test fails if the rule it names is taken out.

The simulation is only worth what it enforces: code that passes on it must not depend on the host
and the device sharing memory, nor on NumPy names that CuPy lacks.
"""

from __future__ import annotations

import json
import operator
import pickle

import numpy as np
import pytest

from minidl.testing import cupy_sim as cp
from minidl.testing.cupy_sim import _names
from minidl.testing.snapshot_cupy_api import SNAPSHOT

IMPLICIT = "Implicit conversion to a NumPy array is not allowed"


@pytest.fixture
def a():
    return cp.asarray(np.arange(12.0).reshape(3, 4))


@pytest.fixture(autouse=True)
def fresh_counts():
    cp.stats.reset()


def test_arrays_are_their_own_class_not_numpy(a):
    assert type(a) is cp.ndarray
    assert not isinstance(a, np.ndarray)
    assert not issubclass(cp.ndarray, np.ndarray)
    assert isinstance(a + 1, cp.ndarray) and isinstance(a[0], cp.ndarray)


@pytest.mark.parametrize(
    "convert",
    [np.asarray, np.array, lambda x: x.__array__(), lambda x: np.float64(0.0) + np.asarray(x)],
    ids=["np.asarray", "np.array", "__array__", "host-expression"],
)
def test_implicit_conversion_to_host_raises_cupys_message(a, convert):
    with pytest.raises(TypeError, match=IMPLICIT):
        convert(a)


def test_numpy_functions_cupy_lacks_raise_instead_of_converting(a):
    for name in ("block", "insert"):
        assert name not in _names.API["cupy"]
    with pytest.raises(TypeError):
        np.block([[a, a]])
    with pytest.raises(TypeError):
        np.insert(a, 0, 1.0)


def test_numpy_functions_dispatch_to_the_simulated_cupy(a):
    total = np.sum(a)
    assert isinstance(total, cp.ndarray) and total.shape == ()  # CuPy reduces to 0-d arrays
    assert float(total) == 66.0
    joined = np.concatenate([a, a])
    assert isinstance(joined, cp.ndarray) and joined.shape == (6, 4)
    assert isinstance(np.exp(a), cp.ndarray)  # a ufunc through __array_ufunc__
    assert isinstance(np.matmul(a, a.T), cp.ndarray)


@pytest.mark.parametrize(
    "mix",
    [
        lambda d, h: d + h,
        lambda d, h: h + d,
        lambda d, h: d * h[0],
        lambda d, h: cp.add(d, h),
        lambda d, h: np.add(h, d),
        lambda d, h: cp.concatenate([d, h]),
        lambda d, h: cp.where(d > 0, h, d),
        lambda d, h: d.__setitem__(0, h[0]),
        lambda d, h: d[h.astype(np.int64) % 3],
        lambda d, h: cp.add.at(d, h.astype(np.int64) % 3, 1.0),
    ],
)
def test_mixing_host_and_device_arrays_raises(a, mix):
    host = np.ones((3, 4))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mix(a, host)


def test_python_and_numpy_scalars_mix_freely(a):
    assert float((a * 2.0 + np.float32(1.0) - 3).sum()) == pytest.approx(66.0 * 2 + 12 - 36)


def test_inplace_operators_keep_the_array(a):
    b = a
    a += 1
    a *= cp.asarray(2.0)
    assert a is b and float(a[0, 0]) == 2.0


def test_explicit_transfers_are_counted(a):
    cp.stats.reset()
    host = np.zeros((5, 2), dtype=np.float32)
    d = cp.asarray(host)
    assert (cp.stats.to_device_calls, cp.stats.to_device_bytes) == (1, 40)
    back = d.get()
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    cp.asnumpy(d)
    assert (cp.stats.to_host_calls, cp.stats.to_host_bytes) == (2, 80)
    assert cp.asarray(d) is d  # already on the device: no transfer
    assert cp.stats.to_device_calls == 1
    d.set(np.ones((5, 2), dtype=np.float32))
    assert cp.stats.to_device_calls == 2 and float(d.sum()) == 10.0


def test_reading_device_values_counts_a_synchronisation(a):
    cp.stats.reset()
    float(a[0, 1])
    int(a[0, 1])
    bool(a[0, 1] > 0)
    a[0, 1].item()
    a[0].tolist()
    assert cp.stats.syncs == 5
    assert cp.stats.to_host_calls == 0


def test_duplicate_index_assignment_raises_scatter_add_accumulates():
    target = cp.zeros(4)
    target[cp.asarray([0, 2])] = 1.0  # unique indices: fine
    with pytest.raises(ValueError, match="duplicate indices"):
        target[cp.asarray([1, 1])] = 5.0
    with pytest.raises(ValueError, match="duplicate indices"):
        target[[3, 3]] = cp.asarray([1.0, 2.0])
    cp.add.at(target, cp.asarray([1, 1, 3]), 1.0)
    from minidl.testing.cupy_sim import cupyx

    cupyx.scatter_add(target, cp.asarray([3, 3]), cp.asarray([0.5, 0.5]))
    np.testing.assert_array_equal(target.get(), [1.0, 2.0, 1.0, 2.0])


def _syncs_of(fn) -> int:
    before = cp.stats.syncs
    fn()
    return cp.stats.syncs - before


@pytest.mark.parametrize(
    "data_dependent",
    [
        lambda a: a[a > 5],
        lambda a: a.__setitem__(a > 5, 0.0),
        lambda a: a.nonzero(),
        lambda a: cp.nonzero(a),
        lambda a: cp.flatnonzero(a),
        lambda a: cp.argwhere(a),
        lambda a: cp.unique(a),
        lambda a: cp.where(a > 5),
    ],
    ids=[
        "mask-get",
        "mask-set",
        "ndarray.nonzero",
        "nonzero",
        "flatnonzero",
        "argwhere",
        "unique",
        "where-1-arg",
    ],
)
def test_a_result_whose_size_is_data_counts_a_synchronisation(a, data_dependent):
    """CuPy reads the count back before it can allocate (cupy/_core/_routines_indexing.pyx)."""
    assert _syncs_of(lambda: data_dependent(a)) == 1


@pytest.mark.parametrize(
    "no_sync",
    [
        lambda a: a[cp.asarray([0, 2])],
        lambda a: cp.where(a > 5, a, 0.0),
        lambda a: cp.copyto(a, 0.0, where=a > 5),
        lambda a: cp.count_nonzero(a),
    ],
    ids=["int-gather", "where-3-args", "copyto-where", "count_nonzero"],
)
def test_shapes_known_in_advance_need_no_synchronisation(a, no_sync):
    assert _syncs_of(lambda: no_sync(a)) == 0


@pytest.mark.parametrize("keyword", [{"where": True}, {"order": "F"}, {"subok": True}])
def test_ufuncs_take_only_cupys_keywords(a, keyword):
    with pytest.raises(TypeError, match="Wrong arguments"):
        cp.add(a, 1.0, **keyword)
    assert isinstance(cp.add(a, 1.0, dtype=np.float32, casting="same_kind"), cp.ndarray)


def test_ufunc_arity_is_checked(a):
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        cp.exp(a, a, a)


@pytest.mark.parametrize(
    "method, ufunc, supported",
    [
        ("at", "add", True),
        ("at", "maximum", True),
        ("at", "multiply", False),
        ("at", "divide", False),
        ("reduce", "add", True),
        ("reduce", "maximum", False),
        ("accumulate", "multiply", True),
        ("accumulate", "maximum", False),
        ("reduceat", "multiply", False),
    ],
)
def test_ufunc_methods_only_where_cupy_has_them(method, ufunc, supported):
    f = getattr(cp, ufunc)
    if supported:
        getattr(f, method)
    else:
        with pytest.raises(NotImplementedError, match="not supported"):
            getattr(f, method)


@pytest.mark.parametrize(
    "with_list",
    [
        lambda a: cp.maximum(a, [1.0, 2.0, 3.0, 4.0]),
        lambda a: a + [1.0, 2.0, 3.0, 4.0],
        lambda a: a.__setitem__(0, [1.0, 2.0, 3.0, 4.0]),
        lambda a: a.__setitem__(slice(None), (1.0, 2.0, 3.0, 4.0)),
    ],
    ids=["ufunc", "operator", "row-assignment", "slice-assignment"],
)
def test_lists_are_refused_where_cupy_refuses_them(a, with_list):
    with pytest.raises(TypeError, match="Unsupported type"):
        with_list(a)


def test_lists_are_accepted_as_index_and_with_an_index_array(a):
    a[cp.asarray([0, 2])] = [[1.0, 1.0, 1.0, 1.0]]  # CuPy converts the value here
    assert float(a[[0, 2]].sum()) == 8.0


def test_ufunc_outputs_are_c_contiguous_whatever_the_inputs_layout(a):
    t = a.T  # (4, 3), Fortran-ordered
    assert t.strides != (24, 8)
    assert (t * 2.0).strides == (24, 8)  # NumPy would keep (8, 32)
    assert cp.exp(t).strides == (24, 8)


def _add_one_to_even_columns(a):
    a[:, ::2] += 1.0


@pytest.mark.parametrize(
    "op, launches",
    [
        (lambda a: a + 1.0, 1),
        (lambda a: cp.exp(a, out=a), 1),
        (lambda a: a.sum(axis=0), 1),
        (lambda a: cp.matmul(a, a.T), 1),
        (lambda a: a.copy(), 1),
        (lambda a: a[cp.asarray([0, 1])], 1),
        (lambda a: a.__setitem__(slice(0, 1), 0.0), 1),
        (lambda a: a.__setitem__(slice(0, 1), a[1:2]), 1),
        (_add_one_to_even_columns, 1),  # the add; CuPy skips writing a view back onto itself
        (lambda a: cp.add.at(a, cp.asarray([0, 0]), 1.0), 1),
        (lambda a: a.reshape(4, 3), 0),
        (lambda a: a.T, 0),
        (lambda a: a[1:, ::2], 0),
        (lambda a: cp.expand_dims(a, 0), 0),
        (lambda a: a.astype(a.dtype, copy=False), 0),
    ],
)
def test_kernel_launches_are_counted_views_launch_nothing(a, op, launches):
    cp.stats.reset()
    op(a)
    assert cp.stats.launches == launches


def test_only_names_real_cupy_has(a):
    api = _names.API
    assert set(dir(cp)) <= set(api["cupy"])
    assert "block" not in api["cupy"] and hasattr(np, "block")
    with pytest.raises(AttributeError, match="not in CuPy"):
        cp.block  # noqa: B018  (NumPy has it, CuPy does not)
    with pytest.raises(AttributeError):
        a.resize((12,))  # numpy.ndarray has resize, cupy.ndarray does not
    with pytest.raises(TypeError):
        range(cp.asarray(3))  # cupy.ndarray has no __index__
    with pytest.raises(TypeError):
        operator.index(cp.asarray(3))
    with pytest.raises(NotImplementedError, match="not simulated"):
        cp.ElementwiseKernel  # noqa: B018  (CuPy has it; the simulation cannot compile kernels)


def test_submodules_hold_only_names_real_cupy_has():
    from minidl.testing.cupy_sim import cupyx

    api = _names.API

    def public(namespace) -> set[str]:
        return {n for n in vars(namespace) if not n.startswith("_")} - {"annotations"}

    # Generator is real but loaded lazily by CuPy, so dir(cupy.random) does not list it
    assert public(cp.random) <= set(api["random"]) | {"Generator"}
    assert public(cp.cuda) <= set(api["cuda"])
    assert public(cupyx) <= set(api["cupyx"])
    assert public(cp.lib) == {"stride_tricks"}
    assert public(cp.lib.stride_tricks) <= set(api["lib.stride_tricks"])
    assert set(dir(cp.cuda.Stream)) - set(dir(object)) - {"null"} <= set(api["cuda.Stream"]) | {
        "__enter__",
        "__exit__",
        "__dict__",
        "__weakref__",
        "__module__",
    }


def test_random_is_cupys_api_with_a_stream_unlike_numpys():
    rng = cp.random.default_rng(0)
    values = rng.random(5)
    assert isinstance(values, cp.ndarray)
    assert not np.allclose(values.get(), np.random.default_rng(0).random(5))
    cp.random.seed(0)
    np.random.seed(0)
    assert not np.allclose(cp.random.rand(5).get(), np.random.rand(5))
    cp.random.seed(0)
    first = cp.random.rand(5).get()
    cp.random.seed(0)
    np.testing.assert_array_equal(cp.random.rand(5).get(), first)  # seeded: repeatable
    for missing in ("permutation", "shuffle", "choice", "normal"):  # not on CuPy's Generator
        with pytest.raises(AttributeError):
            getattr(rng, missing)
    assert isinstance(cp.random.permutation(4), cp.ndarray)  # the legacy API has it
    assert isinstance(rng.integers(0, 10, 3), cp.ndarray)


def test_stride_tricks_take_device_arrays_only(a):
    view = cp.lib.stride_tricks.as_strided(a, shape=(2, 2), strides=a.strides)
    assert isinstance(view, cp.ndarray) and float(view[1, 1]) == 5.0
    with pytest.raises(TypeError):
        cp.lib.stride_tricks.as_strided(np.zeros(4), shape=(2,), strides=(8,))
    with pytest.raises(TypeError):
        cp.lib.stride_tricks.as_strided(a, shape=(2,), strides=(8,), writeable=False)


def test_cuda_namespace_device_streams_events(a):
    assert cp.cuda.runtime.getDeviceCount() == 1
    with cp.cuda.Device(0) as dev:
        assert dev.id == 0
    cp.stats.reset()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    (a @ a.T).sum()
    end.record()
    end.synchronize()
    assert cp.cuda.get_elapsed_time(start, end) >= 0.0
    cp.cuda.get_current_stream().synchronize()
    with cp.cuda.Stream() as s:
        s.synchronize()
    assert cp.stats.syncs == 3
    with pytest.raises(AttributeError):
        cp.cuda.no_such_thing  # noqa: B018


def test_memory_pool_counts_live_device_buffers():
    pool = cp.get_default_memory_pool()
    before = pool.used_bytes()
    big = cp.zeros((1000,), dtype=cp.float32)
    assert pool.used_bytes() == before + 4000
    view = big[10:]
    assert pool.used_bytes() == before + 4000  # a view holds no new buffer
    del big, view
    assert pool.used_bytes() == before


def test_float64_and_float32_creation_is_recorded(a):
    cp.stats.reset()
    (a.astype(cp.float32) * 2).sum()
    assert cp.stats.created.get("float32", 0) == 3 and "float64" not in cp.stats.created


def test_device_arrays_pickle_through_the_host(a):
    again = pickle.loads(pickle.dumps(a))
    assert isinstance(again, cp.ndarray)
    np.testing.assert_array_equal(again.get(), a.get())


def test_snapshot_is_the_committed_file_and_matches_cupy_when_installed():
    committed = json.loads(SNAPSHOT.read_text())
    assert committed == _names.API
    assert {"ndarray", "random", "lib.stride_tricks", "cupyx", "cuda"} <= set(committed)
    cupy = pytest.importorskip("cupy")
    if cupy.__version__ != committed["cupy_version"]:
        pytest.skip(f"installed CuPy {cupy.__version__} differs from the snapshot's")
    from minidl.testing.snapshot_cupy_api import snapshot

    assert snapshot() == committed
