"""Download a file safely: stream to a temporary file, check size and MD5, then rename; within an
overall deadline, with a progress bar."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.request
from typing import BinaryIO

from ..serialization import atomic_open


def md5sum(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    path: str,
    md5: str | None = None,
    timeout: float = 60.0,
    deadline_s: float | None = 3600.0,
    progress: bool = False,
) -> str:
    """Fetch ``url`` into ``path`` (the folder must exist); returns ``path``.

    The bytes go to a temporary file next to ``path`` (``minidl.serialization.atomic_open``);
    only a complete download (all Content-Length bytes, matching ``md5`` when given) replaces
    ``path``. On any failure the temporary file is removed and an error says what happened, so
    no partial file is left. ``timeout``: the most one read may wait; ``deadline_s``: the most the
    whole download may take (a server trickling a byte at a time never times out a read);
    ``progress``: a progress bar on stderr.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"download: the folder {folder!r} does not exist; create it first")
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    with atomic_open(path) as f:
        received, expected, digest = _fetch(url, f, timeout, deadline, progress)
        if expected is not None and received != expected:
            raise OSError(
                f"download of {url} stopped after {received} of {expected} bytes (the connection "
                f"closed early); nothing was kept, try again"
            )
        if md5 is not None and digest != md5:
            raise ValueError(
                f"download of {url}: MD5 checksum {digest} does not match the expected {md5} "
                f"({received} bytes received); the file was discarded. Check the URL, or retry "
                f"if the transfer was corrupted"
            )
    return path


def _fetch(
    url: str, f: BinaryIO, timeout: float, deadline: float | None, progress: bool
) -> tuple[int, int | None, str]:
    """Stream ``url`` into ``f``: (bytes received, Content-Length or None, MD5 hex digest)."""
    from tqdm import tqdm

    h = hashlib.md5()
    received, expected = 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None else None
            name = os.path.basename(url)
            with tqdm(total=expected, desc=name, unit="B", unit_scale=True, file=sys.stderr,
                      disable=not progress, mininterval=1.0) as bar:  # fmt: skip
                while block := response.read1(1 << 16):  # what has arrived, up to 64 KiB
                    f.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(
                            f"the download's deadline passed ({received} of {expected or '?'} "
                            "bytes received)"
                        )
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise OSError(
            f"download of {url} failed after {received} bytes: {e}; nothing was kept, try again"
        ) from e
    return received, expected, h.hexdigest()
