"""``python googlenet.py ...`` run as a user runs it, on a tiny CIFAR-format data set made here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers.cifar import write_cifar
from helpers.paths import ROOT
from helpers.training import TIMINGS

import minidl as md


def run(*args, check=True):
    # resumed runs are compared bit for bit: that needs OpenBLAS's thread count fixed, which
    # the load-following policy otherwise lowers while other programs are busy (1 and 2 threads
    # round some products differently; docs/training.md)
    env = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS=str(os.cpu_count() or 1))
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
    # 40 test images, fewer than --eval-images: each epoch saw them all; the end adds flips
    assert [r["test_images"] for r in rows] == [40, 40] and "final_test_acc" not in rows[0]
    assert rows[-1]["final_test_images"] == 40 and rows[-1]["final_test_tta_views"] == 6
    assert (
        f"{rows[-1]['final_test_tta_acc']:.2%} on the whole test set with test-time augmentation "
        "(6 views averaged; plain " in result.stdout
    )


@pytest.mark.slow
def test_eval_images_follows_the_run_on_a_subset_and_ends_on_the_whole_test_set(tmp_path):
    data = write_cifar(str(tmp_path / "data"))
    out = tmp_path / "run"
    result = run("train", "--data", data, "--out", out, *TINY, "--eval-images", 10, "--no-tta")
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["test_images"] for r in rows] == [10, 10]
    assert rows[-1]["final_test_images"] == 40 and "final_test_tta_acc" not in rows[-1]
    assert f"final test accuracy {rows[-1]['final_test_acc']:.2%} on the whole test set " in (
        result.stdout
    )
    flipped = run("eval", "--checkpoint", out / "last.npz", "--data", data, "--tta")
    assert "6 views averaged (plain " in flipped.stdout


@pytest.mark.slow
def test_ema_keeps_an_average_of_the_weights_that_eval_measures(tmp_path):
    """train --ema: each epoch's row and line have the average's accuracy beside the model's,
    the checkpoint keeps it, and eval --averaged measures it (eval without, the model)."""
    data = write_cifar(str(tmp_path / "data"))
    out = tmp_path / "run"
    result = run("train", "--data", data, "--out", out, *TINY, "--ema", 0.9, "--no-tta")
    rows = json.loads((out / "metrics.json").read_text())
    assert all("averaged_test_acc" in r for r in rows)
    assert f"averaged weights {rows[-1]['averaged_test_acc']:.2%}" in result.stdout
    averaged = run("eval", "--checkpoint", out / "last.npz", "--data", data, "--averaged")
    assert "the average of its weights" in averaged.stdout
    assert f"test accuracy {rows[-1]['averaged_test_acc']:.2%}" in averaged.stdout
    plain = run("eval", "--checkpoint", out / "last.npz", "--data", data)
    assert f"test accuracy {rows[-1]['test_acc']:.2%}" in plain.stdout
    none = run("train", "--data", data, "--out", tmp_path / "plain", *TINY, "--no-tta")
    assert "averaged" not in none.stdout
    refused = run("eval", "--checkpoint", tmp_path / "plain" / "last.npz", "--data", data,
                  "--averaged", check=False)  # fmt: skip
    assert refused.returncode == 2 and "holds no average of the weights" in refused.stderr


@pytest.mark.slow
def test_resume_continues_and_matches_an_uninterrupted_run(trained, tmp_path):
    data, out, _ = trained
    # a run stopped after epoch 1, resumed (the checkpoint alone: its data, folder and options)
    # for epoch 2, must equal the two-epoch run
    part = tmp_path / "part"
    run("train", "--data", data, "--out", part, *TINY, "--seed", 3, "--stop-after-epochs", 1)
    rows = json.loads((part / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1]
    resumed = run("train", "--resume", part / "last.npz")
    assert "final test accuracy" in resumed.stdout
    rows = json.loads((part / "metrics.json").read_text())
    full = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    timing = TIMINGS
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows] == [
        {k: v for k, v in r.items() if k not in timing} for r in full
    ]
    assert md.load(part / "last.npz")["model"].keys() == md.load(out / "last.npz")["model"].keys()
    for key, value in md.load(out / "last.npz")["model"].items():
        np.testing.assert_array_equal(
            md.load(part / "last.npz")["model"][key].numpy(), value.numpy()
        )


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path, sig, status):
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
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stdout + stderr
    assert "checkpoint saved" in stderr and "Traceback" not in stderr
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]  # nothing half-written
    resumed = run("train", "--resume", out / "last.npz")  # the checkpoint alone
    assert "after 4 epochs" in resumed.stdout
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_a_time_budget_steers_the_run_to_a_completed_schedule(tmp_path):
    data = write_cifar(str(tmp_path / "data"))
    out = tmp_path / "run"
    result = run("train", "--data", data, "--out", out, "--width", 0.0625, "--batch-size", 32,
                 "--time-budget-min", 0.2)  # fmt: skip
    assert "fit the time budget of 0.2 minutes (re-planned after every step)" in result.stdout
    assert "final test accuracy" in result.stdout
    rows = json.loads((out / "metrics.json").read_text())
    assert rows and rows[-1]["lr"] == pytest.approx(0.1 / 10 / 100)  # OneCycle's last rate
    ckpt = md.load(out / "last.npz")
    assert ckpt["finished"] and ckpt["train_config"]["epochs"] == 0
    status, _, err = main_in_process("train", "--resume", out / "last.npz", "--epochs", 9)
    assert status == 2 and "steered by its time budget of 0.2 minutes" in err
    status, text, err = main_in_process("train", "--resume", out / "last.npz")
    assert status == 0, err  # the budget was used: nothing more to train
    assert json.loads((out / "metrics.json").read_text()) == rows


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
    assert "cannot change on --resume: --width 0.5 (the run has 0.0625)" in other.stderr

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


# ---------------------------------------------------------------- no lost runs, fail fast
def main_in_process(*args):
    """googlenet.py in this process (faster than a subprocess): exit status, stdout, stderr."""
    import contextlib
    import io

    from googlenet_cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            status = e.code
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "option, value, allowed",
    [
        ("--lr", "nan", "(0, 10]"),
        ("--lr", "50", "(0, 10]"),
        ("--lr", "0", "(0, 10]"),
        ("--label-smoothing", "2", "[0, 1)"),
        ("--momentum", "-1", "[0, 1)"),
        ("--momentum", "1", "[0, 1)"),
        ("--width", "inf", "(0, 8]"),
        ("--width", "0", "(0, 8]"),
        ("--batch-size", "0", "[1, 65536]"),
        ("--batch-size", "2.5", "[1, 65536]"),
        ("--weight-decay", "-0.1", "[0, 1]"),
        ("--aux-weight", "nan", "[0, 10]"),
        ("--cutout", "40", "[0, 32]"),
        ("--low-res", "40", "[8, 32]"),
        ("--low-res-share", "1.5", "[0, 1]"),
        ("--seed", "-1", "[0, 4.29497e+09]"),
        ("--epochs", "-2", "[0, 100000]"),
        ("--time-budget-min", "inf", "(0, 1e+06]"),
        ("--stop-after-epochs", "0", "[1, 100000]"),
    ],
)
def test_every_value_is_checked_with_the_option_its_range_and_the_value(
    tmp_path, option, value, allowed
):
    status, _, err = main_in_process("train", "--out", tmp_path / "r", option, value)
    assert status == 2 and f"argument {option}: " in err and allowed in err and value in err
    assert not (tmp_path / "r").exists()  # refused before anything was made


def test_an_out_holding_a_run_is_refused_unless_resumed_or_overwritten(trained, tmp_path):
    data, out, _ = trained
    before = (out / "last.npz").read_bytes()
    status, _, err = main_in_process("train", "--data", data, "--out", out, *TINY)
    assert status == 2 and "holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "last.npz").read_bytes() == before
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("last.npz", "metrics.json"):
        (copy / name).write_bytes((out / name).read_bytes())
    status, _, err = main_in_process(
        "train", "--data", data, "--out", copy, *TINY, "--overwrite", "--stop-after-epochs", 1
    )
    assert status == 0, err
    assert [r["epoch"] for r in json.loads((copy / "metrics.json").read_text())] == [1]


def test_two_runs_in_one_folder(trained, tmp_path):
    from minidl.train.checkpoint import run_lock

    data, _, _ = trained
    with run_lock(tmp_path):  # a run in progress (this process holds the lock)
        status, _, err = main_in_process("train", "--data", data, "--out", tmp_path, *TINY)
    assert status == 2 and f"process {os.getpid()} is training into it" in err


def test_an_unwritable_out_fails_before_loading_data(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    # --data does not exist either: the folder is checked first
    status, _, err = main_in_process(
        "train", "--data", tmp_path / "nope", "--out", tmp_path / "file" / "run"
    )
    assert status == 2 and "--out" in err and "cannot be written" in err
    if os.geteuid() != 0:  # (root may write anywhere)
        locked = tmp_path / "readonly"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            status, _, err = main_in_process("train", "--data", tmp_path / "nope", "--out", locked)
        finally:
            locked.chmod(0o700)
        assert status == 2 and "cannot be written" in err


def test_resume_refuses_options_that_define_the_run_and_extends_epochs(trained, tmp_path):
    data, out, _ = trained
    part = tmp_path / "part"
    part.mkdir()
    for name in ("last.npz", "metrics.json"):
        (part / name).write_bytes((out / name).read_bytes())
    status, _, err = main_in_process("train", "--resume", part / "last.npz", "--lr", 0.2,
                                     "--schedule", "cosine", "--batch-size", 16,
                                     "--low-res", 28, "--flip", "alternate")  # fmt: skip
    assert status == 2 and "cannot change on --resume" in err
    assert "--lr 0.2 (the run has 0.05)" in err and "--schedule 'cosine'" in err
    assert "--low-res 28 (the run has 24)" in err
    assert "--flip 'alternate' (the run has 'random')" in err
    assert "--batch-size" not in err  # the same value is no change
    status, _, err = main_in_process("train", "--resume", part / "last.npz", "--epochs", 1)
    assert status == 2 and "already trained 2 epochs" in err
    status, out_text, err = main_in_process("train", "--resume", part / "last.npz", "--epochs", 3)
    assert status == 0, err
    assert "after 3 epochs" in out_text
    rows = json.loads((part / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_a_diverging_loss_stops_with_a_clear_message(trained, tmp_path, monkeypatch):
    from minidl.train import run as training

    data, _, _ = trained
    step = training.train_step
    calls = [0]

    def nan_at_step_5(*args):  # 3 batches per epoch: the second of epoch 2
        calls[0] += 1
        loss, correct = step(*args)
        return (float("nan") if calls[0] == 5 else loss), correct

    monkeypatch.setattr(training, "train_step", nan_at_step_5)
    status, _, err = main_in_process("train", "--data", data, "--out", tmp_path, *TINY)
    assert status == 1 and "training loss is nan at batch 2 of epoch 2" in err
    assert "lower the learning rate" in err and "last.npz" in err
    assert md.load(tmp_path / "last.npz")["epoch"] == 1  # the last good checkpoint


def test_ema_warms_its_decay_up_so_a_short_runs_average_is_not_its_first_weights():
    """train --ema 0.998: the second update moves the average 9/11 of the way (decay
    min(0.998, 2/11)), not 0.002 (a 4-minute run's average, 176 steps, tested at 10%)."""
    from googlenet import googlenet_cifar
    from googlenet_cli import weight_average

    model = googlenet_cifar(0.0625)
    average = weight_average(model, 0.998)
    assert average is not None and average.use_buffers
    assert weight_average(model, 0.0) is None
    a, c = [np.zeros(2)], [np.ones(2)]
    average.multi_avg_fn(a, c, 1)
    np.testing.assert_allclose(a[0], 9 / 11)


def test_eval_checks_the_class_count_before_the_test_pass(trained, tmp_path, monkeypatch):
    from googlenet import googlenet_cifar
    from googlenet_cli import model_config
    from minidl.train import run as training

    data, _, _ = trained
    model = googlenet_cifar(0.0625, 100)
    path = tmp_path / "c100.npz"
    md.save({"model_config": model_config(model), "model": model.state_dict()}, path)
    monkeypatch.setattr(training, "evaluate", lambda *a: pytest.fail("the test pass ran"))
    status, _, err = main_in_process("eval", "--checkpoint", path, "--data", data)
    assert status == 2 and "classifies 100 classes; CIFAR-10 has 10" in err


def test_no_internet_names_data_and_leaves_no_folders(tmp_path, monkeypatch):
    import googlenet_cli
    from minidl.data import cifar10

    def offline(url, path, md5=None, **kwargs):
        raise OSError(f"download of {url} failed after 0 bytes: <urlopen error no network>")

    cache = tmp_path / "cache" / "minidl" / "cifar10"
    monkeypatch.setattr(googlenet_cli, "DEFAULT_DATA", str(cache))
    monkeypatch.setattr(cifar10, "_download", offline)
    status, _, err = main_in_process("train", "--out", tmp_path / "run", *TINY)
    assert status == 2 and "--data" in err and "no network" in err
    assert not (tmp_path / "cache").exists()


def test_progressive_resizing_from_the_runs_options():
    """The default trains the first 70% of its schedule on 24x24 crops; --low-res 32, a share
    of 0, or a run saved before the option existed (no low_res in its checkpoint) never do."""
    from googlenet_cli import TRAIN_DEFAULTS, progressive_resizing

    share, transform = progressive_resizing(dict(TRAIN_DEFAULTS))
    crop = transform.transforms[0]
    assert share == 0.7 and (crop.size, crop.padding) == (24, 0)
    assert progressive_resizing(dict(TRAIN_DEFAULTS, low_res=32)) is None
    assert progressive_resizing(dict(TRAIN_DEFAULTS, low_res_share=0.0)) is None
    old = {k: v for k, v in TRAIN_DEFAULTS.items() if not k.startswith("low_res")}
    assert progressive_resizing(old) is None
    _, with_cutout = progressive_resizing(dict(TRAIN_DEFAULTS, cutout=8))
    assert type(with_cutout.transforms[-1]).__name__ == "Cutout"


def test_flip_alternate_shares_one_alternating_flip_between_both_sizes():
    """--flip alternate: the full-size and the small crops' transforms mirror the same images
    in the same epochs (one AlternatingHorizontalFlip, seeded by --seed); random flips are the
    default and a run saved before --flip existed keeps them."""
    from googlenet_cli import TRAIN_DEFAULTS, progressive_resizing, train_flip
    from minidl.data import AlternatingHorizontalFlip, RandomHorizontalFlip

    assert train_flip(dict(TRAIN_DEFAULTS), 100) is None
    old = {k: v for k, v in TRAIN_DEFAULTS.items() if k != "flip"}
    assert train_flip(old, 100) is None
    flip = train_flip(dict(TRAIN_DEFAULTS, flip="alternate", seed=4), 100)
    assert isinstance(flip, AlternatingHorizontalFlip) and (flip.images, flip.seed) == (100, 4)
    _, small = progressive_resizing(dict(TRAIN_DEFAULTS), flip)
    assert small.transforms[1] is flip
    _, small = progressive_resizing(dict(TRAIN_DEFAULTS))
    assert isinstance(small.transforms[1], RandomHorizontalFlip)


def test_train_with_flip_alternate_records_it_in_the_run(trained, tmp_path):
    data, _, _ = trained
    out = tmp_path / "run"
    status, _, err = main_in_process(
        "train", "--data", data, "--out", out, *TINY, "--epochs", 1, "--flip", "alternate"
    )
    assert status == 0, err
    assert md.load(out / "last.npz")["train_config"]["flip"] == "alternate"


def test_the_first_plan_counts_the_small_crops_faster_steps():
    """11 full-size epochs' time: half the steps at 24x24 (0.5625 of a step) makes 0.78 of
    each step's time, so 14 epochs fit; 70% of them (the default) 0.69, so 15 (15.9)."""
    from googlenet_cli import TRAIN_DEFAULTS, epochs_with_small_crops

    assert epochs_with_small_crops(11, dict(TRAIN_DEFAULTS, low_res_share=0.5)) == 14
    assert epochs_with_small_crops(11, dict(TRAIN_DEFAULTS)) == 15
    assert epochs_with_small_crops(11, dict(TRAIN_DEFAULTS, low_res=32)) == 11
    assert epochs_with_small_crops(11, dict(TRAIN_DEFAULTS, low_res=16, low_res_share=1.0)) == 44


def test_whiten_initialises_the_stem_from_the_training_images(tmp_path):
    """--whiten: the stem's filters whiten the patches of the training images as the network
    sees them (normalised); the rest of the model keeps its seeded initialisation."""
    from googlenet import googlenet_cifar
    from googlenet_cli import whiten_stem
    from minidl.data import CIFAR10, cifar10_test_transform

    train_set = CIFAR10(write_cifar(str(tmp_path / "data")), train=True)
    md.nn.init.manual_seed(0)
    plain = googlenet_cifar(0.0625)
    md.nn.init.manual_seed(0)
    whitened = googlenet_cifar(0.0625)
    whiten_stem(whitened, train_set, images=30)
    expected = md.Tensor(np.zeros_like(plain.conv1.conv.weight.data))
    images = cifar10_test_transform()(train_set.nchw()[:30])
    md.nn.init.patch_whitening_(expected, images)
    np.testing.assert_array_equal(whitened.conv1.conv.weight.data, expected.data)
    assert not np.allclose(whitened.conv1.conv.weight.data, plain.conv1.conv.weight.data)
    for (name, a), (_, b) in zip(plain.named_parameters(), whitened.named_parameters()):
        if name != "conv1.conv.weight":
            np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_train_whitens_by_default_records_it_and_keeps_it_on_resume(trained, tmp_path):
    """The whitened stem is the default (records/recipe.md); --no-whiten turns it off. Either
    is recorded in the checkpoint and refused as a change on resume."""
    data, _, _ = trained
    for flag, whiten in ((), True), (("--no-whiten",), False):
        out = tmp_path / f"run-{whiten}"
        status, _, err = main_in_process(
            "train", "--data", data, "--out", out, *TINY, "--stop-after-epochs", 1, *flag
        )
        assert status == 0, err
        assert md.load(out / "last.npz")["train_config"]["whiten"] is whiten
        other = "--no-whiten" if whiten else "--whiten"
        status, _, err = main_in_process("train", "--resume", out / "last.npz", other)
        assert status == 2 and f"--whiten {not whiten} (the run has {whiten})" in err


def _bn_params(model):
    norms = [m for _, m in model.named_modules() if isinstance(m, md.nn.BatchNorm2d)]
    return [bn.weight for bn in norms], [bn.bias for bn in norms]


def test_optimizer_groups_default_is_one_group_of_every_parameter_in_order():
    """Neither option: the single group the optimizer always had, so runs are unchanged."""
    from googlenet import googlenet_cifar
    from googlenet_cli import optimizer_groups

    model = googlenet_cifar(0.0625)
    groups = optimizer_groups(model, 0.1, 5e-4, freeze_bn_weight=False, bn_bias_lr=1.0)
    assert len(groups) == 1 and set(groups[0]) == {"params"}
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_frozen_bn_weights_leave_the_optimizer_and_biases_step_a_factor_faster():
    """--freeze-bn-weight: batch norm's scales stay at 1 through SGD steps with weight decay.
    --bn-bias-lr 8: from the same start and batch, the biases' first step is 8 times the
    one-group step (they start at 0, so the divided weight decay plays no part), and every
    other parameter steps exactly as in one group."""
    from googlenet import googlenet_cifar
    from googlenet_cli import optimizer_groups

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = md.Tensor(np.array([0, 1, 2, 3]))
    stepped = {}
    for freeze, factor in (False, 1.0), (True, 8.0):
        md.nn.init.manual_seed(0)
        model = googlenet_cifar(0.0625)
        groups = optimizer_groups(model, 0.1, 5e-4, freeze_bn_weight=freeze, bn_bias_lr=factor)
        optimizer = md.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        before = {n: p.data.copy() for n, p in model.named_parameters()}
        np.random.seed(0)  # the same dropout mask
        md.functional.cross_entropy(model(md.Tensor(x)), y).backward()
        optimizer.step()
        stepped[factor] = {n: p.data - before[n] for n, p in model.named_parameters()}
        weights, biases = _bn_params(model)
        assert len(weights) > 10
        if freeze:
            assert all(not w.requires_grad and w.grad is None for w in weights)
            assert all(np.all(w.data == 1) for w in weights)
            assert groups[1]["lr"] == pytest.approx(0.8)
            assert groups[1]["weight_decay"] == pytest.approx(5e-4 / 8)
            assert {id(p) for p in groups[1]["params"]} == {id(b) for b in biases}
    for name, delta in stepped[8.0].items():
        leaf = name.rsplit(".", 1)[-1]
        is_bn = name.split(".")[-2] == "bn"
        if is_bn and leaf == "bias":
            np.testing.assert_allclose(delta, 8 * stepped[1.0][name], rtol=1e-5, atol=1e-9)
            assert np.abs(delta).max() > 0, name
        elif is_bn and leaf == "weight":
            assert np.all(delta == 0) and np.abs(stepped[1.0][name]).max() > 0, name
        else:
            np.testing.assert_allclose(delta, stepped[1.0][name], rtol=1e-4, atol=1e-7)


def test_train_freezes_bn_weights_records_both_options_and_keeps_them_on_resume(trained, tmp_path):
    """A run with --freeze-bn-weight --bn-bias-lr 4 trains with batch norm's scales at 1 and
    its biases moving, records both options and refuses either as a change on resume."""
    data, _, _ = trained
    out = tmp_path / "run"
    status, _, err = main_in_process(
        "train", "--data", data, "--out", out, *TINY, "--stop-after-epochs", 1,
        "--freeze-bn-weight", "--bn-bias-lr", 4,
    )  # fmt: skip
    assert status == 0, err
    ckpt = md.load(out / "last.npz")
    assert ckpt["train_config"]["freeze_bn_weight"] is True
    assert ckpt["train_config"]["bn_bias_lr"] == 4.0
    rates = [group["lr"] for group in ckpt["optimizer"]["param_groups"]]
    assert len(rates) == 2 and rates[1] == pytest.approx(4 * rates[0])  # OneCycle per group
    state = {k: np.asarray(getattr(v, "data", v)) for k, v in ckpt["model"].items()}
    scales = [k for k in state if k.endswith("bn.weight")]
    biases = [k for k in state if k.endswith("bn.bias")]
    assert scales and len(scales) == len(biases)
    assert all(np.all(state[k] == 1) for k in scales)
    assert any(np.abs(state[k]).max() > 0 for k in biases)
    status, _, err = main_in_process("train", "--resume", out / "last.npz", "--bn-bias-lr", 1)
    assert status == 2 and "--bn-bias-lr 1.0 (the run has 4.0)" in err
    status, _, err = main_in_process("train", "--resume", out / "last.npz", "--no-freeze-bn-weight")
    assert status == 2 and "--freeze-bn-weight False (the run has True)" in err
