"""keep_freed_memory: glibc's malloc told to keep freed blocks; arrays still allocate and free."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_keep_freed_memory_applies_on_glibc_and_arrays_still_work():
    # in a subprocess: the setting is process-wide and would outlive this test
    code = (
        "import numpy as np\n"
        "from minidl.backend import keep_freed_memory\n"
        "assert keep_freed_memory() is True\n"
        "for _ in range(3):\n"
        "    a = np.ones((64, 1 << 16), np.float32)\n"
        "    assert float(a.sum()) == 64 * (1 << 16)\n"
        "    del a\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
