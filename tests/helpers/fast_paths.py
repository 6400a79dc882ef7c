"""Test helpers for the ops that have a fast CPU path beside their textbook code.

conv2d (``conv_nhwc``), the pools (``pool_blocked``) and batch norm (``batchnorm_nhwc``) send
NumPy arrays down a fast path (``minidl.ops.dispatch.use_fast_path``); every other array (CuPy)
runs the textbook code. ``use_path`` makes a NumPy test take either one through the public switch
(``MINIDL_TEXTBOOK``), so the fast paths are tested even in a ``MINIDL_TEXTBOOK=1`` session, and
``as_layout`` builds the memory layouts those paths treat differently.
"""

from __future__ import annotations

import numpy as np
import pytest

from minidl.ops.dispatch import TEXTBOOK_ENV
from minidl.ops.layout import nchw_view

PATHS = ["fast", "textbook"]
LAYOUTS = ["nchw", "channels_last", "channel_slice"]


def use_path(path: str, xp, monkeypatch) -> None:
    """Run the test on the fast NumPy paths ("fast") or on the textbook code ("textbook").

    On a non-NumPy backend only the textbook code exists, so "fast" is skipped there."""
    if path == "fast" and xp is not np:
        pytest.skip("the fast paths serve NumPy arrays only")
    monkeypatch.setenv(TEXTBOOK_ENV, "1" if path == "textbook" else "0")


def as_layout(xp, a, layout: str):
    """The NCHW array ``a`` as NCHW, as a channels-last view (an NCHW view of an NHWC buffer), or
    as channels 2.. of a wider channels-last buffer (what split hands to each branch)."""
    if layout == "nchw":
        return xp.asarray(a)
    nhwc = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    if layout == "channel_slice":
        wider = np.pad(nhwc, ((0, 0), (0, 0), (0, 0), (2, 1)))  # 2 channels before, 1 after
        return nchw_view(xp.asarray(wider))[:, 2 : 2 + a.shape[1]]
    return nchw_view(xp.asarray(nhwc))
