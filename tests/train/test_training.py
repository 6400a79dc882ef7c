"""minidl.train as a library: fit a tiny model on tiny data, its files, resuming, Ctrl-C."""

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
    images,
    loss_fn,
    make_run,
    weights,
)

import minidl as md
import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader
from minidl.ops.activation import ReLU
from minidl.train import fit_simple
from minidl.train import run as training
from minidl.train.checkpoint import read_checkpoint, run_lock
from minidl.train.run import (
    Interrupted,
    NonFiniteLoss,
    estimate_epochs,
    evaluate,
    evaluate_tta,
    fit,
    train_step,
)
from minidl.viz import plot_curves, save_figure


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted run of EPOCHS epochs: (result, final weights, output folder)."""
    out = tmp_path_factory.mktemp("full")
    model, optimizer, schedule, loader, test_loader = make_run()
    result = fit(
        model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=test_loader,
        out=out, checkpoint_extra={"note": "mine"}, progress=False,
    )  # fmt: skip
    return result, weights(model), out, schedule


def test_fit_learns_and_writes_its_files(full_run):
    result, _, out, schedule = full_run
    assert result.finished and [r["epoch"] for r in result.rows] == [1, 2, 3]
    first, last = result.rows[0], result.rows[-1]
    assert last["train_loss"] < first["train_loss"] - 0.2 and last["test_loss"] < first["test_loss"]
    assert last["test_acc"] > 0.35  # 4 classes: chance is 0.25
    for name in ("metrics.csv", "metrics.json", "curves.png", "last.npz", "best.npz"):
        assert (out / name).is_file(), name
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert json.loads((out / "metrics.json").read_text()) == result.rows
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert (
        header == "epoch,train_loss,train_acc,test_loss,test_acc,test_images,lr,images_per_s,time_s"
    )
    saved = read_checkpoint(out / "last.npz")
    assert saved["note"] == "mine" and (saved["epoch"], saved["batch"]) == (EPOCHS, 0)
    assert saved["best_acc"] == result.best_acc
    assert result.best_acc == pytest.approx(max(r["test_acc"] for r in result.rows), abs=1e-5)
    assert schedule.last_epoch == EPOCHS * 4 - 1  # never stepped past the planned steps


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
    run = dict(schedule=schedule, test_loader=test_loader, out=tmp_path, progress=False)
    where = divmod(after_steps, 4)  # (epoch, batch) a save at the step's end continues from
    if how == "on_step":
        first = fit(model, loss_fn, loader, optimizer, EPOCHS, on_step=on_step, **run)
        assert not first.finished
        path = first.checkpoint
    else:
        with pytest.raises(Interrupted) as caught:
            fit(model, loss_fn, loader, optimizer, EPOCHS, on_step=on_step, **run)
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
    resumed = fit(model, loss_fn, loader, optimizer, EPOCHS, resume=resume, **run)
    assert resumed.finished
    assert comparable(resumed.rows) == comparable(full.rows)
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, final[key], err_msg=key)


def test_stop_after_epochs_then_resume(full_run, tmp_path):
    full, final, _, _ = full_run
    model, optimizer, schedule, loader, test_loader = make_run()
    run = dict(schedule=schedule, test_loader=test_loader, out=tmp_path, progress=False)
    first = fit(model, loss_fn, loader, optimizer, EPOCHS, stop_after_epochs=2, **run)
    assert not first.finished and [r["epoch"] for r in first.rows] == [1, 2]
    model, optimizer, schedule, loader, test_loader = make_run(seed=3)
    run.update(schedule=schedule, test_loader=test_loader)
    resumed = fit(
        model, loss_fn, loader, optimizer, EPOCHS, resume=read_checkpoint(first.checkpoint), **run
    )
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
        fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
            test_loader=InterruptingLoader(test_loader), out=tmp_path, progress=False)  # fmt: skip
    assert (caught.value.epoch, caught.value.batch) == (1, 0)  # after epoch 1, complete
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1] and "test_acc" in rows[0]
    assert read_checkpoint(caught.value.checkpoint)["epoch"] == 1


def test_train_step_counts_accuracy_on_the_main_logits():
    """A model whose training output is a tuple (main logits first, as GoogLeNet's aux heads)."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x), -self.fc(x)

    model = TwoHeads()
    x = md.tensor(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], np.float32))
    y = md.tensor(np.array([0, 1, 1]))
    with md.no_grad():
        expected = int((model(x)[0].numpy().argmax(axis=1) == y.numpy()).sum())
    optimizer = optim.SGD(list(model.parameters()), lr=0.0)
    loss, correct = train_step(model, lambda out, t: F.cross_entropy(out[0], t), optimizer, x, y)
    assert correct == expected
    assert loss == pytest.approx(F.cross_entropy(model(x)[0], y).item())


def test_evaluate_reports_loss_accuracy_and_predictions():
    model, _, _, _, test_loader = make_run()
    result = evaluate(model, test_loader)
    assert not model.training
    logits = model(md.Tensor(test_loader.images.transpose(0, 3, 1, 2).astype(np.float32) / 255))
    np.testing.assert_array_equal(result.predictions, logits.numpy().argmax(axis=1))
    np.testing.assert_array_equal(result.targets, test_loader.labels)
    assert result.accuracy == pytest.approx(np.mean(result.predictions == result.targets))
    assert result.loss == pytest.approx(F.cross_entropy(logits, md.tensor(result.targets)).item())


def test_fit_evaluates_the_whole_test_set_once_when_the_run_ends(tmp_path):
    model, optimizer, schedule, loader, subset = make_run()
    whole = DataLoader(images(40, 2), 10)  # the whole test set; subset has 24 images
    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=subset,
                 final_test_loader=whole, final_tta=True, out=tmp_path,
                 progress=False)  # fmt: skip
    rows = result.rows
    assert [r["test_images"] for r in rows] == [24] * EPOCHS
    assert not any("final_test_acc" in r for r in rows[:-1])
    plain, augmented = evaluate_tta(model, whole)
    assert rows[-1]["final_test_images"] == 40
    assert rows[-1]["final_test_tta_acc"] == round(augmented.accuracy, 5)
    assert rows[-1]["final_test_tta_views"] == 6
    assert rows[-1]["final_test_acc"] == round(plain.accuracy, 5)
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    assert read_checkpoint(tmp_path / "last.npz")["metrics"] == rows


def test_fit_simple_is_fits_loop_without_the_chores(capsys):
    """The readable loop trains exactly as ``fit`` does (same batches, dropout masks, schedule):
    the same weights and the same per-epoch figures."""
    model, optimizer, schedule, loader, test_loader = make_run()
    rows = fit_simple(model, loss_fn, loader, optimizer, EPOCHS, schedule, test_loader)
    printed = capsys.readouterr().out.splitlines()
    simple = weights(model)
    model, optimizer, schedule, loader, test_loader = make_run()
    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
                 test_loader=test_loader, progress=False)  # fmt: skip
    for key, value in weights(model).items():
        np.testing.assert_array_equal(simple[key], value, err_msg=key)
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    for mine, theirs in zip(rows, result.rows, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert round(mine[key], 5) == theirs[key], key
    assert len(printed) == EPOCHS and printed[0].startswith("epoch 1, train_loss ")


def test_estimate_epochs_leaves_everything_as_it_was():
    model, _, _, loader, _ = make_run()
    before = weights(model)
    loader_state, dropout_state = loader.rng.bit_generator.state, np.random.get_state()
    few = estimate_epochs(model, loss_fn, loader, budget_s=1e-6)
    many = estimate_epochs(model, loss_fn, loader, budget_s=1e6, eval_images=24)
    assert few == 1 and many > 100
    for key, value in weights(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert all(p.grad is None for p in model.parameters())
    assert loader.rng.bit_generator.state == loader_state
    np.testing.assert_array_equal(np.random.get_state()[1], dropout_state[1])


def test_estimate_epochs_spends_at_most_a_share_of_the_budget_on_its_timing(monkeypatch):
    """A step of 10 s (a slow device) in a budget of 100 s: one step timed, not eight."""
    clock = FakeClock(monkeypatch)
    calls = []

    def slow_loss(output, y):
        calls.append(len(y))
        clock.now += 10.0
        return loss_fn(output, y)

    model, _, _, loader, _ = make_run()
    epochs = estimate_epochs(model, slow_loss, loader, budget_s=100.0)
    assert len(calls) == 1 and epochs == int(0.95 * 100 / (len(loader) * 10.0))
    calls.clear()  # a long budget: eight steps timed, the first two left out of the speed
    epochs = estimate_epochs(model, slow_loss, loader, budget_s=10_000.0)
    assert len(calls) == 8 and epochs == int(0.95 * 10_000 / (len(loader) * 10.0))


def test_plot_curves_takes_fit_rows_with_a_wall_time_panel(full_run, tmp_path):
    result = full_run[0]
    path = plot_curves(result.rows, tmp_path / "rows.png")
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_save_figure_leaves_nothing_when_drawing_fails(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no"))
    with pytest.raises(RuntimeError):
        save_figure(fig, tmp_path / "f.png")
    assert os.listdir(tmp_path) == []


def test_extending_epochs_on_resume_replans_the_schedule(tmp_path):
    """A 2-epoch run resumed with epochs=3: the schedule built for 3 epochs keeps its plan and
    continues from the saved step (the saved plan's total made OneCycleLR fail at step 9)."""
    model, optimizer, _, loader, test_loader = make_run()
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=2 * len(loader))
    run = dict(test_loader=test_loader, out=tmp_path, progress=False)
    fit(model, loss_fn, loader, optimizer, 2, schedule=schedule, **run)
    model, optimizer, _, loader, test_loader = make_run(seed=5)
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.2, total_steps=3 * len(loader))
    run["test_loader"] = test_loader
    resume = read_checkpoint(tmp_path / "last.npz")
    longer = fit(model, loss_fn, loader, optimizer, 3, schedule=schedule, resume=resume, **run)
    assert longer.finished and [r["epoch"] for r in longer.rows] == [1, 2, 3]
    assert schedule.last_epoch == 3 * len(loader) - 1 and schedule.total_steps == 12
    assert read_checkpoint(tmp_path / "last.npz")["epochs"] == 3
    with pytest.raises(ValueError, match="epochs=2 is fewer"):
        fit(model, loss_fn, loader, optimizer, 2, resume=read_checkpoint(tmp_path / "last.npz"))


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, optimizer, schedule, loader, test_loader = make_run()
    calls = [0]

    def diverging(output, y):
        calls[0] += 1
        loss = F.cross_entropy(output, y)
        return loss * float("nan") if calls[0] == 6 else loss  # step 2 of epoch 2

    with pytest.raises(NonFiniteLoss, match=r"nan at batch 2 of epoch 2.*last\.npz") as caught:
        fit(model, diverging, loader, optimizer, EPOCHS, schedule=schedule,
            test_loader=test_loader, out=tmp_path, progress=False)  # fmt: skip
    assert (caught.value.epoch, caught.value.batch) == (1, 1)
    saved = read_checkpoint(tmp_path / "last.npz")
    assert (saved["epoch"], saved["batch"]) == (1, 0)
    arrays = [v.numpy() if isinstance(v, md.Tensor) else v for v in saved["model"].values()]
    assert all(np.isfinite(a).all() for a in arrays)


def test_images_per_s_after_a_resume_counts_only_the_images_trained_since(tmp_path, monkeypatch):
    FakeClock(monkeypatch)
    model, optimizer, schedule, loader, test_loader = make_run()
    run = dict(schedule=schedule, test_loader=test_loader, out=tmp_path, progress=False)
    fit(model, loss_fn, loader, optimizer, EPOCHS, on_step=lambda s: s.step == 3, **run)
    model, optimizer, schedule, loader, test_loader = make_run()
    run.update(schedule=schedule, test_loader=test_loader)
    resumed = fit(model, loss_fn, loader, optimizer, EPOCHS,
                  resume=read_checkpoint(tmp_path / "last.npz"), **run)  # fmt: skip
    # every step takes a second: BATCH images/s, not the 4 batches' images over 1 s
    assert [r["images_per_s"] for r in resumed.rows] == [BATCH] * EPOCHS


def test_the_bar_shows_the_whole_runs_time_left(monkeypatch):
    clock = FakeClock(monkeypatch)
    bar = training.Progress(4, "epoch 1/3", enabled=False, later_batches=8)
    for _ in range(2):
        clock.now += 2.0
        bar.update(8, 8.0, 4)
    assert bar.run_left_s == pytest.approx(10 * 2.0)  # 2 of this epoch and 8 later, 2 s each
    assert training._duration(3725) == "1:02:05"


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


# ---------------------------------------------------------------------------- a time budget
def _plan_naive(time_left, step_s, eval_s, epoch_left, per_epoch):
    """plan_steps step by step: train while a step and the final evaluation still fit; at an
    epoch's end evaluate, unless the run ends there (then that evaluation is the final one)."""
    steps, t, in_epoch = 0, time_left, epoch_left
    while True:
        if in_epoch == 0:  # an epoch's end
            if t - eval_s < eval_s + step_s:
                return steps
            t, in_epoch = t - eval_s, per_epoch
        if t - step_s < eval_s:
            return steps
        steps, t, in_epoch = steps + 1, t - step_s, in_epoch - 1


def test_plan_steps_counts_the_steps_and_evaluations_that_fit():
    from minidl.train.budget import plan_steps

    assert plan_steps(10, 1, 2, 5, 5) == 6  # 5, the epoch's evaluation, 1, the final one
    assert plan_steps(9.5, 1, 2, 5, 5) == 5  # the epoch's evaluation is the final one
    assert plan_steps(1, 1, 2, 5, 5) == 0  # not even the final evaluation: stop now
    assert plan_steps(3, 1, 2, 0, 5) == 0  # at an epoch's end, whose evaluation comes next
    assert plan_steps(15, 1, 2, 5, 5, final_extra_s=5) == 6  # a fuller final pass is reserved
    rng = np.random.default_rng(0)
    for _ in range(2000):
        time_left, step_s, eval_s = rng.uniform(-5, 400), rng.uniform(0.1, 3), rng.uniform(0, 20)
        args = (time_left, step_s, eval_s, int(rng.integers(0, 8)), int(rng.integers(1, 8)))
        assert plan_steps(*args) == _plan_naive(*args), args
    with pytest.raises(ValueError, match="step_s"):
        plan_steps(10, 0, 1, 1, 1)


class SlowingClock(FakeClock):
    """FakeClock whose steps take ``step_s`` (changeable mid-run) and evaluations of
    ``make_run``'s 24 test images ``eval_s`` (other sets in proportion)."""

    def __init__(self, monkeypatch, step_s=1.0, eval_s=3.0):
        super().__init__(monkeypatch)
        self.step_s, self.eval_s = step_s, eval_s
        step, evaluate = training.train_step, training.evaluate

        def timed_step(*args):
            self.now += self.step_s - 1.0  # FakeClock's step adds one second
            return step(*args)

        def timed_evaluate(model, loader):
            self.now += self.eval_s * training._images(loader) / 24
            return evaluate(model, loader)

        monkeypatch.setattr(training, "train_step", timed_step)
        monkeypatch.setattr(training, "evaluate", timed_evaluate)


def _budgeted(out, budget_s, on_step=None, resume=None):
    model, optimizer, schedule, loader, test_loader = make_run()
    positions = []

    def record(step):
        positions.append(schedule.last_epoch)
        return on_step is not None and on_step(step)

    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
                 test_loader=test_loader, out=out, progress=False, on_step=record,
                 resume=resume, time_budget_s=budget_s)  # fmt: skip
    return result, schedule, optimizer, positions


FINAL_LR = 0.2 / 25 / 1e4  # OneCycleLR's last rate (max_lr / div_factor / final_div_factor)


@pytest.mark.parametrize("budget_s", [7.0, 20.0, 33.5, 60.0])
def test_a_budgeted_run_ends_within_its_budget_with_its_schedule_completed(
    tmp_path, monkeypatch, budget_s
):
    clock = SlowingClock(monkeypatch)  # steps of 1 s, evaluations of 3 s; 4 steps an epoch
    result, schedule, optimizer, positions = _budgeted(tmp_path, budget_s)
    # all 24 test images while their 3 s fit a fifth of the budget; in 7 s, the first batch
    assert all(r["test_images"] == (24 if budget_s >= 20 else 10) for r in result.rows)
    assert result.finished and result.elapsed_s == clock.now
    assert budget_s - 1.0 - 3.0 <= result.elapsed_s <= budget_s  # no step and evaluation unused
    assert schedule.last_epoch == EPOCHS * 4 - 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(FINAL_LR)
    assert positions == sorted(positions)  # the schedule never goes back
    rows = result.rows
    assert rows[-1]["lr"] == pytest.approx(FINAL_LR)
    assert read_checkpoint(tmp_path / "last.npz")["finished"]
    assert all(isinstance(r["epoch"], int) for r in rows[:-1])
    trained = sum(4 if isinstance(r["epoch"], int) else round(r["epoch"] % 1 * 4) for r in rows)
    assert trained == len(positions)  # a partial last epoch's row says how much of it ran


def _timed_test_passes(monkeypatch, clock):
    """Evaluating an image costs a third of training one (1/24 s here), as the budget assumes."""
    evaluate_, evaluate_tta_ = training.evaluate, training.evaluate_tta

    def timed_evaluate(model, loader):
        clock.now += training._images(loader) / 24
        return evaluate_(model, loader)

    def timed_evaluate_tta(model, loader, shifts):
        clock.now += 2 * len(shifts) * len(loader.images) / 24
        return evaluate_tta_(model, loader, shifts)

    monkeypatch.setattr(training, "evaluate", timed_evaluate)
    monkeypatch.setattr(training, "evaluate_tta", timed_evaluate_tta)


@pytest.mark.parametrize(
    "final_images, views",
    [(20, 6), (96, 2), (480, None)],  # six views' extra 4.2 s fit 10% of 50 s; 20 s, 100 s don't
)
def test_a_budgeted_run_reserves_the_fullest_final_pass_its_budget_affords(
    tmp_path, monkeypatch, capsys, final_images, views
):
    """The final pass in six views is reserved from the start when its cost beyond the plain
    pass fits 10% of the budget; else the mirror pair (2 views), else the plain pass, said in a
    line. Either way the run ends within its budget."""
    clock = FakeClock(monkeypatch)
    _timed_test_passes(monkeypatch, clock)
    model, optimizer, schedule, loader, subset = make_run()
    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=subset,
                 final_test_loader=DataLoader(images(final_images, 2), 10), final_tta=True,
                 out=tmp_path, progress=False, time_budget_s=50.0)  # fmt: skip
    last = result.rows[-1]
    assert result.finished and last["final_test_images"] == final_images
    assert last.get("final_test_tta_views") == views
    assert ("final_test_tta_acc" in last) == (views is not None)
    assert 50.0 - 1.0 - 1.0 <= result.elapsed_s <= 50.0  # no step or evaluation left unused
    said = "test-time augmentation in 6 views would take"
    assert (said in capsys.readouterr().out) == (views != 6)


def test_a_budget_too_short_for_the_whole_test_set_ends_on_its_last_evaluation(
    tmp_path, monkeypatch, capsys
):
    """A plain final pass that alone would take over half the budget (720 images: 30 s of 50)
    is left out, said in a line: the run's last evaluation (of the subset) is its result, and the
    run still ends within its budget. (A slow device: the whole set on the simulated GPU.)"""
    clock = FakeClock(monkeypatch)
    _timed_test_passes(monkeypatch, clock)
    model, optimizer, schedule, loader, subset = make_run()
    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=subset,
                 final_test_loader=DataLoader(images(720, 2), 10), final_tta=True,
                 out=tmp_path, progress=False, time_budget_s=50.0)  # fmt: skip
    last = result.rows[-1]
    assert result.finished and "test_acc" in last
    assert "final_test_acc" not in last and "final_test_images" not in last
    assert 50.0 - 1.0 - 1.0 <= result.elapsed_s <= 50.0
    out = capsys.readouterr().out
    assert "a final pass over the 720 test images would take ~30 s" in out
    assert "the run's last evaluation" in out


def test_the_final_pass_choices_and_the_budget_that_picks_one():
    from minidl.train.budget import TimeBudget

    assert training.final_pass_choices(training.TTA_SHIFTS) == [training.TTA_SHIFTS, ((0, 0),), ()]
    assert training.final_pass_choices(((0, 0),)) == [((0, 0),), ()]
    assert training.final_pass_choices(()) == [()]
    budget = TimeBudget(100.0, 0, 10, final_images=[60, 20, 10])
    assert budget.final_choice() == 0  # no step timed yet: the fullest
    budget.stepped(3.0)  # an image 0.1 s to evaluate: 50 extra images 5 s, 10 of them 1 s
    assert budget.final_choice() == 0
    budget.stepped(7.0), budget.stepped(7.0)  # 7/30 s an image: 11.7 s and 2.3 s
    assert budget.final_choice() == 1
    budget.stepped(40.0), budget.stepped(40.0), budget.stepped(40.0)  # 1.3 s an image: 13 s
    assert budget.final_choice() == 2
    # the last choice no pass at all: only when the plainest takes over half the budget
    assert training.final_pass_choices((), skippable=True) == [(), None]
    budget = TimeBudget(100.0, 0, 10, final_images=[60, 20, 10, 0])
    budget.stepped(3.0)  # 0.1 s an image: six views fit
    assert budget.final_choice() == 0
    budget.stepped(150.0), budget.stepped(150.0)  # 5 s an image: the plain pass 50 s, half
    assert budget.final_choice() == 2
    budget.stepped(170.0), budget.stepped(170.0), budget.stepped(170.0)  # 5.7 s: over half
    assert budget.final_choice() == 3
    for bad in ([], [10, 20], [5, -1]):
        with pytest.raises(ValueError, match="final_images must be image counts"):
            TimeBudget(100.0, 0, 10, final_images=bad)


def test_a_budget_measures_a_test_images_cost_where_it_is_not_a_third_of_a_training_ones(
    tmp_path, monkeypatch, capsys
):
    """Where a step is bound by kernel launches (a GPU), a test image costs far more than a
    third of a training image: here seven (the 24 test images 40 s, a step of 4 images 1 s).
    The budget times one test batch after the first step; an evaluation of all 24 (40 s) is
    over a fifth of the budget, so each evaluates the first batch of 10 (16.7 s), said in a
    line, and the run still ends within its time."""
    clock = SlowingClock(monkeypatch, eval_s=40.0)
    result, schedule, _, _ = _budgeted(tmp_path, 60.0)
    assert result.finished and 60.0 - 1.0 - 16.7 <= result.elapsed_s <= 60.0
    assert result.elapsed_s == clock.now and schedule.last_epoch == EPOCHS * 4 - 1
    assert [r["test_images"] for r in result.rows] == [10] * len(result.rows)
    out = capsys.readouterr().out
    assert out.count("an evaluation of the 24 test images would take ~40 s") == 1
    assert "each evaluation uses the first 10" in out


def test_the_budget_scales_a_measured_test_image_by_the_steps_speed():
    from minidl.train.budget import FILES_S, TimeBudget

    budget = TimeBudget(100.0, test_images=20, batch_size=4)
    assert not budget.wants_test_timing()  # not before the first step
    budget.stepped(1.2)
    assert budget.wants_test_timing()  # after it, before the first plan
    assert budget.test_s(20) == pytest.approx(20 / 4 * 1.2 / 3)  # a third of a training image
    budget.tested(2.0, 10)  # 0.2 s a test image
    assert not budget.wants_test_timing()
    assert budget.test_s(20) == pytest.approx(20 / 4 * 1.2 / 3)  # still, until the first plan
    budget.stepped(1.2)  # the first plan: a test image is related to this speed
    assert budget.test_s(20) == pytest.approx(4.0)
    assert budget.eval_estimate() == pytest.approx(4.0 + FILES_S)
    for _ in range(5):
        budget.stepped(2.4)  # the machine is twice as slow now
    assert budget.test_s(20) == pytest.approx(8.0)


def test_an_evaluation_too_slow_for_the_budget_runs_its_first_test_batches():
    """An epoch's evaluation may take a fifth of the budget: slower, only the first whole
    test batches that fit (at least one) are evaluated, and the plan counts those."""
    from minidl.train.budget import FILES_S, TimeBudget

    def after_a_test_batch(seconds):
        budget = TimeBudget(100.0, test_images=2000, batch_size=4)
        budget.stepped(1.2)
        assert budget.test_images_now() == 2000  # no test batch timed yet: all of them
        budget.tested(seconds, 500)
        budget.stepped(1.2)  # the first plan: the speed the test cost is related to
        return budget

    assert after_a_test_batch(1.0).test_images_now() == 2000  # 4 s in all: they fit 20 s
    slow = after_a_test_batch(10.0)  # 40 s in all: two batches (20 s) fit
    assert slow.test_images_now() == 1000
    assert slow.eval_estimate() == pytest.approx(20.0 + FILES_S)
    assert after_a_test_batch(50.0).test_images_now() == 500  # none fits: one


def test_a_machine_that_slows_down_mid_run_still_ends_within_the_budget(tmp_path, monkeypatch):
    clock = SlowingClock(monkeypatch)

    def slow_down(step):
        if step.step == 5:
            clock.step_s, clock.eval_s = 3.0, 9.0  # another program started
        return False

    result, schedule, _, positions = _budgeted(tmp_path, 60.0, on_step=slow_down)
    assert result.finished and 60.0 - 3.0 - 9.0 <= result.elapsed_s <= 60.0
    assert schedule.last_epoch == EPOCHS * 4 - 1 and positions == sorted(positions)


def test_a_budgeted_run_resumes_with_the_time_its_budget_has_left(tmp_path, monkeypatch):
    clock = SlowingClock(monkeypatch)
    first, *_ = _budgeted(tmp_path, 30.0, on_step=lambda s: s.step == 3)
    assert not first.finished
    clock.now += 1000.0  # time between the sessions does not count
    resumed, schedule, _, positions = _budgeted(
        tmp_path, 30.0, resume=read_checkpoint(tmp_path / "last.npz")
    )
    assert resumed.finished and 30.0 - 4.0 <= resumed.elapsed_s <= 30.0
    assert resumed.elapsed_s == pytest.approx(clock.now - 1000.0)
    assert schedule.last_epoch == EPOCHS * 4 - 1
    # a finished run resumed again has nothing left to do
    done = read_checkpoint(tmp_path / "last.npz")
    again, _, _, positions = _budgeted(tmp_path, 30.0, resume=done)
    assert again.finished and positions == [] and again.rows == resumed.rows
