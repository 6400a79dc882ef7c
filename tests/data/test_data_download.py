"""CIFAR10(download=True) against a local HTTP server on 127.0.0.1 serving a tiny archive:
success, wrong checksum, a connection that dies mid-file, a 404; no partial file is left."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time

import pytest
from helpers.cifar import CLASSES, PER_BATCH, tiny_archive_bytes

from minidl.data import CIFAR10
from minidl.data.download import download

ARCHIVE = tiny_archive_bytes()
MD5 = hashlib.md5(ARCHIVE).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        Handler.requests.append(self.path)
        if self.path == "/missing.tar.gz":
            self.send_error(404)
            return
        if self.path == "/trickle.tar.gz":  # a byte every 50 ms: no single read ever times out
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARCHIVE)))
            self.end_headers()
            try:
                for i in range(100):
                    self.wfile.write(ARCHIVE[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(ARCHIVE)))
        self.end_headers()
        if self.path == "/dies.tar.gz":
            self.wfile.write(ARCHIVE[: len(ARCHIVE) // 2])
            self.wfile.flush()
            self.close_connection = True  # hang up with half the promised bytes sent
            return
        self.wfile.write(ARCHIVE)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_extracts_and_loads(tmp_path, server):
    root = tmp_path / "data"
    ds = CIFAR10(root, train=True, download=True, url=f"{server}/cifar.tar.gz", md5=MD5)
    assert len(ds) == 5 * PER_BATCH and ds.classes == CLASSES
    assert sorted(os.listdir(root)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert len(os.listdir(root / "cifar-10-batches-py")) == 7
    # present now: no second request
    before = len(Handler.requests)
    assert len(CIFAR10(root, train=False, download=True, url=f"{server}/cifar.tar.gz")) == 6
    assert len(Handler.requests) == before


def test_wrong_checksum_keeps_nothing(tmp_path, server):
    with pytest.raises(ValueError, match=f"MD5 checksum {MD5} does not match"):
        CIFAR10(tmp_path, download=True, url=f"{server}/cifar.tar.gz", md5="0" * 32)
    assert os.listdir(tmp_path) == []


def test_connection_dying_mid_file_keeps_nothing(tmp_path, server):
    with pytest.raises(OSError, match=rf"stopped after {len(ARCHIVE) // 2} of {len(ARCHIVE)}"):
        CIFAR10(tmp_path, download=True, url=f"{server}/dies.tar.gz", md5=MD5)
    assert os.listdir(tmp_path) == []


def test_http_error_keeps_nothing(tmp_path, server):
    with pytest.raises(OSError, match="404"):
        CIFAR10(tmp_path, download=True, url=f"{server}/missing.tar.gz", md5=MD5)
    assert os.listdir(tmp_path) == []


def test_existing_archive_with_bad_checksum_is_reported(tmp_path, server):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="delete it and download again"):
        CIFAR10(tmp_path, download=True, url=f"{server}/cifar.tar.gz", md5=MD5)


def test_incomplete_folder_is_reported_before_downloading(tmp_path, server):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    before = len(Handler.requests)
    with pytest.raises(FileExistsError, match="Delete it"):
        CIFAR10(tmp_path, download=True, url=f"{server}/cifar.tar.gz", md5=MD5)
    assert len(Handler.requests) == before


def test_a_trickling_server_meets_the_overall_deadline(tmp_path, server):
    start = time.monotonic()
    with pytest.raises(OSError, match="deadline passed"):
        download(f"{server}/trickle.tar.gz", str(tmp_path / "a.tar.gz"), MD5, deadline_s=0.5)
    assert time.monotonic() - start < 2.5
    assert os.listdir(tmp_path) == []


def test_the_download_shows_progress(tmp_path, server, capsys):
    CIFAR10(tmp_path, download=True, url=f"{server}/cifar.tar.gz", md5=MD5)
    err = capsys.readouterr().err
    assert "cifar.tar.gz" in err and "100%" in err


def test_a_failed_download_leaves_no_empty_folders(tmp_path, server):
    with pytest.raises(OSError, match="404"):
        CIFAR10(tmp_path / "cache" / "cifar10", download=True, url=f"{server}/missing.tar.gz")
    assert os.listdir(tmp_path) == []
