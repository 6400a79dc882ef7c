"""``python googlenet.py ...`` run as a user runs it, on a tiny CIFAR-format data set made here."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root, n_train=64, n_test=40, seed=0) -> str:
    """A CIFAR-10 python-version folder: 5 training batches, a test batch and the meta file.

    Images are noise plus a per-class colour, so the classes can actually be learnt."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)

    def batch(n):
        labels = rng.integers(0, 10, n)
        colour = (labels[:, None] * 25).astype(np.int64)
        data = np.clip(rng.integers(0, 60, (n, 3072)) + colour, 0, 255).astype(np.uint8)
        return {b"data": data, b"labels": labels.tolist()}

    for i in range(1, 6):
        with open(os.path.join(folder, f"data_batch_{i}"), "wb") as f:
            pickle.dump(batch(n_train // 5), f, protocol=2)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump(batch(n_test), f, protocol=2)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f, protocol=2)
    return root


def run(*args, check=True):
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "googlenet.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


TINY = ("--width", 0.0625, "--batch-size", 16, "--epochs", 2, "--lr", 0.05)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of a two-epoch run (a checkpoint after epoch 1), resumed for the second."""
    tmp = tmp_path_factory.mktemp("cli")
    data = write_cifar(str(tmp / "data"))
    out = tmp / "run"
    first = run("train", "--data", data, "--out", out, *TINY, "--seed", 3)
    return data, out, first


@pytest.mark.slow
def test_train_writes_metrics_checkpoints_and_plot(trained):
    data, out, result = trained
    for name in ("metrics.csv", "metrics.json", "last.npz", "best.npz", "curves.png"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "time_s"):
        assert key in rows[0]
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,train_loss,train_acc,test_loss,test_acc")
    assert "final test accuracy" in result.stdout
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # nothing half-written


@pytest.mark.slow
def test_resume_continues_and_matches_an_uninterrupted_run(trained, tmp_path):
    data, out, _ = trained
    # a run stopped after epoch 1, resumed for epoch 2, must equal the two-epoch run
    part = tmp_path / "part"
    run("train", "--data", data, "--out", part, *TINY[:-4], "--epochs", 2, "--lr", 0.05,
        "--seed", 3, "--stop-after-epochs", 1)  # fmt: skip
    rows = json.loads((part / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1]
    resumed = run("train", "--resume", part / "last.npz", "--out", part, "--data", data)
    assert "final test accuracy" in resumed.stdout
    rows = json.loads((part / "metrics.json").read_text())
    full = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    for got, want in zip(rows, full):
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-9)  # the schedule resumed exactly
        # Same batches, same augmentation, same optimizer state; but not bit-identical: the
        # autograd engine sums a tensor's incoming gradients in an order that depends on object
        # ids, so two uninterrupted runs differ in the last digits too.
        for key in ("train_loss", "test_loss"):
            assert got[key] == pytest.approx(want[key], rel=0.03), key


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
    data = write_cifar(str(tmp_path / "data"), n_train=160)
    out = tmp_path / "run"
    args = ["train", "--data", data, "--out", out, *TINY[:-4], "--epochs", 4, "--seed", 1]
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "googlenet.py"), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not (out / "metrics.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # wait for the first epoch's checkpoint
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted" in stdout + stderr and "Traceback" not in stderr
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # nothing half-written
    resumed = run("train", "--resume", out / "last.npz", "--out", out, "--data", data)
    assert "after 4 epochs" in resumed.stdout
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_epochs_fit_the_time_budget(tmp_path):
    data = write_cifar(str(tmp_path / "data"))
    out = tmp_path / "run"
    result = run("train", "--data", data, "--out", out, "--width", 0.0625, "--batch-size", 32,
                 "--time-budget-min", 0.2)  # fmt: skip
    assert "epochs fit the time budget of 0.2 minutes" in result.stdout
    epochs = int(result.stdout.split(" epochs fit")[0].split()[-1])
    rows = json.loads((out / "metrics.json").read_text())
    assert len(rows) == epochs >= 1


@pytest.mark.slow
def test_eval_prints_accuracy_per_class_and_confusion(trained, tmp_path):
    data, out, _ = trained
    png = tmp_path / "confusion.png"
    result = run("eval", "--checkpoint", out / "best.npz", "--data", data, "--confusion", png)
    assert "test accuracy" in result.stdout
    assert "per-class accuracy" in result.stdout and "airplane" in result.stdout
    assert "confusion matrix" in result.stdout
    assert png.is_file()


@pytest.mark.slow
def test_clear_errors(trained, tmp_path):
    data, out, _ = trained
    missing = run("train", "--data", tmp_path / "nope", "--out", tmp_path / "r", check=False)
    assert missing.returncode == 2 and "data folder" in missing.stderr and "nope" in missing.stderr
    assert "Traceback" not in missing.stderr

    other = run("train", "--resume", out / "last.npz", "--width", 0.5, "--data", data,
                "--out", tmp_path / "r2", check=False)  # fmt: skip
    assert other.returncode == 2
    assert "width 0.0625 (checkpoint) vs 0.5 (command line)" in other.stderr

    variant = run("eval", "--checkpoint", out / "last.npz", "--variant", "paper", "--data", data,
                  check=False)  # fmt: skip
    assert variant.returncode == 2 and "'cifar' (checkpoint) vs 'paper'" in variant.stderr

    device = run("train", "--device", "tpu", "--data", data, "--out", tmp_path / "r3", check=False)
    assert device.returncode == 2 and "--device" in device.stderr and "tpu" in device.stderr

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes((out / "last.npz").read_bytes()[:1000])
    bad = run("eval", "--checkpoint", corrupt, "--data", data, check=False)
    assert bad.returncode == 2 and "corrupt" in bad.stderr and "Traceback" not in bad.stderr

    absent = run("eval", "--checkpoint", tmp_path / "absent.npz", "--data", data, check=False)
    assert absent.returncode == 2 and "does not exist" in absent.stderr


def test_summary_command():
    result = run("summary", "--variant", "paper")
    assert "6,998,552 parameters" in result.stdout and "1,582,671,872" in result.stdout
    assert "inception (3a)" in result.stdout
    cifar = run("summary", "--variant", "cifar", "--width", 0.25)  # train's default model
    assert "348,770 parameters" in cifar.stdout
    paper_kernel = run("summary", "--variant", "cifar", "--width", 0.25, "--kernel5", 5)
    assert "372,578 parameters" in paper_kernel.stdout
