"""The fast CPU paths: the same math as the textbook ops in ``minidl.ops``, for NumPy arrays.

A learner reads ``minidl/ops/`` (conv.py, pool.py, norm.py, shape.py): each op's textbook code,
which CuPy runs too. On a CPU, NumPy arrays take these modules instead, chosen in one place,
``minidl.ops.dispatch.fast_path`` (``MINIDL_TEXTBOOK=1`` or ``minidl.textbook()`` turns them off):

- ``conv_nhwc``: convolution on channels-last chunks sized for the cache, one GEMM per thread;
- ``pool_blocked``: max and average pooling as separable 1-D passes over cache-sized blocks;
- ``batchnorm_nhwc``: batch norm's passes over channels-last rows, block by block;
- ``channels``: copies of narrow channel slices with each pixel's channels moved as one item
  (concat's and split's copies, im2col, a batch norm writing into a slice);
- ``parallel``: the thread pool that splits memory-bound passes over the batch (and concat's
  channels-last copy);
- ``threads``: how many threads the pool and OpenBLAS use, fewer while the machine is busy.

Each is tested against its textbook op at thresholds shrunk so small inputs take every route
(tests/ops/test_fast_paths.py).
"""
