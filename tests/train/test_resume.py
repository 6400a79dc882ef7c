"""Stopping and resuming: a resumed run equals the uninterrupted one bit for bit, wherever it was
stopped (Ctrl-C, SIGTERM, an exception, a number of epochs); the run lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers.training import (
    BATCH,
    EPOCHS,
    FakeClock,
    comparable,
    loss_fn,
    make_run,
    weights,
)

from minidl import optim
from minidl.data import AlternatingHorizontalFlip
from minidl.ops.activation import ReLU
from minidl.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from minidl.train import RunFiles, RunPlan
from minidl.train.checkpoint import read_checkpoint, run_lock
from minidl.train.run import (
    Interrupted,
    fit,
)


def interrupt(how, at_step, monkeypatch, optimizer):
    """Arrange for the interrupt ``how`` during training step ``at_step`` (from 1): a signal sent
    from inside ReLU's backward or inside the optimizer's step, or
    two Ctrl-C's in a row (the second stops at once). Returns the ``on_step`` callback."""
    steps = [0]

    def on_step(step):
        steps[0] = step.step
        return how == "on_step" and step.step == at_step

    def send():
        if steps[0] + 1 == at_step:  # (steps[0]: the steps completed)
            sig = signal.SIGTERM if how == "sigterm-in-step" else signal.SIGINT
            os.kill(os.getpid(), sig)
            if how == "two-ctrl-c-in-backward":
                os.kill(os.getpid(), signal.SIGINT)

    if how in ("sigint-in-backward", "two-ctrl-c-in-backward"):
        relu_backward = ReLU.backward

        def backward(self, *grads):
            send()
            return relu_backward(self, *grads)

        monkeypatch.setattr(ReLU, "backward", backward)
    if how == "sigterm-in-step":
        update, sent = optimizer._update, [False]

        def update_then_signal(*args):
            update(*args)  # the flat buffer's update, or the first parameter's on the textbook path
            if not sent[0] and steps[0] + 1 == at_step:
                sent[0] = True
                send()

        optimizer._update = update_then_signal
    return on_step


@pytest.mark.parametrize(
    "how", ["on_step", "sigint-in-backward", "sigterm-in-step", "two-ctrl-c-in-backward"]
)
@pytest.mark.parametrize("after_steps", [1, 4, 6])  # mid-epoch, at an epoch's end, mid-epoch 2
def test_resumed_run_equals_the_uninterrupted_one(
    full_run, tmp_path, monkeypatch, how, after_steps
):
    """Stopped at any step (by on_step, Ctrl-C or SIGTERM inside backward or inside the
    optimizer's step), then resumed from its checkpoint with freshly built objects: the same
    weights, bit for bit, and the same metrics. A signal lets the step finish and saves there;
    a second Ctrl-C stops inside the step and keeps the last checkpoint written before."""
    full, final, _, _ = full_run
    model, optimizer, schedule, loader, test_loader = make_run()
    on_step = interrupt(how, after_steps, monkeypatch, optimizer)
    run = dict(schedule=schedule, test_loader=test_loader, progress=False)
    where = divmod(after_steps, 4)  # (epoch, batch) a save at the step's end continues from
    if how == "on_step":
        first = fit(
            model,
            loss_fn,
            loader,
            optimizer,
            EPOCHS,
            files=RunFiles(tmp_path),
            on_step=on_step,
            **run,
        )
        assert not first.finished
        path = first.checkpoint
    else:
        with pytest.raises(Interrupted) as caught:
            fit(
                model,
                loss_fn,
                loader,
                optimizer,
                EPOCHS,
                files=RunFiles(tmp_path),
                on_step=on_step,
                **run,
            )
        stopped, path = caught.value, caught.value.checkpoint
        if how == "two-ctrl-c-in-backward":  # the last epoch's end, or nothing
            where = ((after_steps - 1) // 4, 0)
            assert not stopped.saved and (path is None) == (after_steps <= 4)
        else:
            assert stopped.saved and stopped.signal == ("SIGTERM" if "sigterm" in how else "SIGINT")
        assert (stopped.epoch, stopped.batch) == where
    monkeypatch.undo()
    if path is not None:
        saved = read_checkpoint(path)
        assert (saved["epoch"], saved["batch"]) == where
    model, optimizer, schedule, loader, test_loader = make_run(seed=7)  # other weights, streams
    if path is None:
        model, optimizer, schedule, loader, test_loader = make_run()
    run.update(schedule=schedule, test_loader=test_loader)
    resume = read_checkpoint(path) if path is not None else None
    resumed = fit(
        model, loss_fn, loader, optimizer, EPOCHS, files=RunFiles(tmp_path, resume=resume), **run
    )
    assert resumed.finished
    assert comparable(resumed.rows) == comparable(full.rows)
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)


def test_stop_after_epochs_then_resume(full_run, tmp_path):
    full, final, _, _ = full_run
    model, optimizer, schedule, loader, test_loader = make_run()
    run = dict(schedule=schedule, test_loader=test_loader, progress=False)
    first = fit(
        model,
        loss_fn,
        loader,
        optimizer,
        EPOCHS,
        files=RunFiles(tmp_path),
        plan=RunPlan(stop_after_epochs=2),
        **run,
    )
    assert not first.finished and [r["epoch"] for r in first.rows] == [1, 2]
    model, optimizer, schedule, loader, test_loader = make_run(seed=3)
    run.update(schedule=schedule, test_loader=test_loader)
    resume = read_checkpoint(first.checkpoint)
    resumed = fit(
        model, loss_fn, loader, optimizer, EPOCHS, files=RunFiles(tmp_path, resume=resume), **run
    )
    assert comparable(resumed.rows) == comparable(full.rows)
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)


@pytest.mark.parametrize("stop_at", [2, 6])  # mid epoch 1 (the flips of epoch 0), mid epoch 2
def test_a_run_with_alternating_flips_resumes_bit_for_bit(tmp_path, stop_at):
    """The flips alternate by epoch: a resumed run's fresh loader is told the epoch it resumes
    in (fit calls set_epoch), so it mirrors the same images as the uninterrupted run."""

    def run_with_alternating_flips(seed=0):
        model, optimizer, schedule, loader, test_loader = make_run(seed)
        loader.transform = AlternatingHorizontalFlip(len(loader.images), seed=5)
        return model, optimizer, dict(schedule=schedule, test_loader=test_loader), loader

    model, optimizer, run, loader = run_with_alternating_flips()
    full = fit(model, loss_fn, loader, optimizer, EPOCHS, progress=False, **run)
    final = weights(model)
    model, optimizer, run, loader = run_with_alternating_flips()
    first = fit(
        model, loss_fn, loader, optimizer, EPOCHS, progress=False, files=RunFiles(tmp_path),
        on_step=lambda step: step.step == stop_at, **run,
    )  # fmt: skip
    assert not first.finished
    model, optimizer, run, loader = run_with_alternating_flips(seed=7)
    assert loader.epoch == 0
    resume = read_checkpoint(first.checkpoint)
    resumed = fit(
        model, loss_fn, loader, optimizer, EPOCHS, progress=False,
        files=RunFiles(tmp_path, resume=resume), **run,
    )  # fmt: skip
    assert comparable(resumed.rows) == comparable(full.rows)
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)


class InterruptingLoader:
    """A test loader that presses Ctrl-C (sends SIGINT) while the epoch's files are due."""

    def __init__(self, loader):
        self.loader, self.sent = loader, False

    def __iter__(self):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return iter(self.loader)


def test_ctrl_c_at_the_end_of_an_epoch_waits_for_the_files(tmp_path):
    model, optimizer, schedule, loader, test_loader = make_run()
    with pytest.raises(Interrupted) as caught:
        fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, progress=False,
            test_loader=InterruptingLoader(test_loader), files=RunFiles(tmp_path))  # fmt: skip
    assert (caught.value.epoch, caught.value.batch) == (1, 0)  # after epoch 1, complete
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1] and "test_acc" in rows[0]
    assert read_checkpoint(caught.value.checkpoint)["epoch"] == 1


def test_extending_epochs_on_resume_replans_the_schedule(tmp_path):
    """A 2-epoch run resumed with epochs=3: the schedule built for 3 epochs keeps its plan and
    continues from the saved step (the saved plan's total made OneCycleLR fail at step 9)."""
    model, optimizer, _, loader, test_loader = make_run()
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=2 * len(loader))
    run = dict(test_loader=test_loader, progress=False)
    fit(model, loss_fn, loader, optimizer, 2, schedule=schedule, files=RunFiles(tmp_path), **run)
    model, optimizer, _, loader, test_loader = make_run(seed=5)
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=3 * len(loader))
    run["test_loader"] = test_loader
    resume = read_checkpoint(tmp_path / "last.npz")
    longer = fit(
        model,
        loss_fn,
        loader,
        optimizer,
        3,
        schedule=schedule,
        files=RunFiles(tmp_path, resume=resume),
        **run,
    )
    assert longer.finished and [r["epoch"] for r in longer.rows] == [1, 2, 3]
    assert schedule.last_epoch == 3 * len(loader) - 1 and schedule.total_steps == 12
    assert read_checkpoint(tmp_path / "last.npz")["epochs"] == 3
    with pytest.raises(ValueError, match="epochs=2 is fewer"):
        fit(
            model,
            loss_fn,
            loader,
            optimizer,
            2,
            files=RunFiles(resume=read_checkpoint(tmp_path / "last.npz")),
        )


def test_images_per_s_after_a_resume_counts_only_the_images_trained_since(tmp_path, monkeypatch):
    FakeClock(monkeypatch)
    model, optimizer, schedule, loader, test_loader = make_run()
    run = dict(schedule=schedule, test_loader=test_loader, progress=False)
    fit(
        model,
        loss_fn,
        loader,
        optimizer,
        EPOCHS,
        files=RunFiles(tmp_path),
        on_step=lambda s: s.step == 3,
        **run,
    )
    model, optimizer, schedule, loader, test_loader = make_run()
    run.update(schedule=schedule, test_loader=test_loader)
    resume = read_checkpoint(tmp_path / "last.npz")
    resumed = fit(
        model, loss_fn, loader, optimizer, EPOCHS, files=RunFiles(tmp_path, resume=resume), **run
    )
    # every step takes a second: BATCH images/s, not the 4 batches' images over 1 s
    assert [r["images_per_s"] for r in resumed.rows] == [BATCH] * EPOCHS


def test_run_lock_refuses_a_second_run_and_takes_over_a_dead_ones(tmp_path):
    with run_lock(tmp_path) as taken_over:
        assert taken_over is None
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from minidl.train.checkpoint import run_lock\n"
             "with run_lock(sys.argv[1]): pass", str(tmp_path)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert other.returncode == 1 and f"process {os.getpid()} is training" in other.stderr
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    (tmp_path / ".lock").write_text(f"{dead_pid}\n")
    (tmp_path / f".last.npz.{dead_pid}.0123abcd.tmp").write_bytes(b"half")
    with run_lock(tmp_path) as taken_over:
        assert taken_over == dead_pid
        assert sorted(os.listdir(tmp_path)) == [".lock"]  # the dead run's temporary file went


def _averaged_run(out, stop_after_epochs=None, resume=None, seed=0):
    """make_run's run with an exponential average of its weights; (result, model, average)."""
    model, optimizer, schedule, loader, test_loader = make_run(seed)
    ema = AveragedModel(model, get_ema_multi_avg_fn(0.9), use_buffers=True)
    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
                 test_loader=test_loader, progress=False, files=RunFiles(out, resume=resume),
                 plan=RunPlan(stop_after_epochs=stop_after_epochs, averaged=ema))  # fmt: skip
    return result, model, ema


def test_a_running_average_of_the_weights_is_evaluated_saved_and_resumed(full_run, tmp_path):
    """plan.averaged is updated after every step (the model's training unchanged), evaluated
    beside the model at every epoch's end, and kept in the checkpoints: a run paused after two
    epochs and resumed with fresh objects ends with the same average, bit for bit."""
    full, final, _, _ = full_run
    whole, model, ema = _averaged_run(tmp_path / "whole")
    for key, value in weights(model).items():  # averaging does not touch the training
        np.testing.assert_array_equal(value, final[key], err_msg=key)
    assert int(ema.n_averaged.data) == EPOCHS * 4  # one update a step
    rows = whole.rows
    assert all(0 <= r["averaged_test_acc"] <= 1 and r["averaged_test_loss"] > 0 for r in rows)
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in full.rows]
    saved = read_checkpoint(tmp_path / "whole" / "last.npz")["averaged"]
    for key, value in ema.state_dict().items():
        np.testing.assert_array_equal(saved[key].numpy(), value.numpy(), err_msg=key)
    first, _, _ = _averaged_run(tmp_path / "parts", stop_after_epochs=2)
    assert not first.finished
    resume = read_checkpoint(first.checkpoint)
    resumed, _, resumed_ema = _averaged_run(tmp_path / "parts", resume=resume, seed=3)
    assert comparable(resumed.rows) == comparable(whole.rows)
    for (key, a), (_, b) in zip(ema.state_dict().items(), resumed_ema.state_dict().items()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=key)


def test_a_checkpoint_without_an_average_starts_one(full_run, tmp_path, capsys):
    _, _, out, _ = full_run
    checkpoint = read_checkpoint(out / "last.npz")
    checkpoint["finished"], checkpoint["epoch"] = False, EPOCHS - 1  # (one epoch still to go)
    _, _, ema = _averaged_run(tmp_path, resume=checkpoint)
    assert "the checkpoint holds no average of the weights: the average starts now" in (
        capsys.readouterr().out
    )
    assert int(ema.n_averaged.data) == 4
