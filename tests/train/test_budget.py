"""A time budget that is kept (fake clocks): the steps and evaluations that fit, the final pass
it affords, a machine that slows down, a resumed budget; estimate_epochs; the bar's time left."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.training import (
    EPOCHS,
    FakeClock,
    images,
    loss_fn,
    make_run,
    weights,
)

from minidl.data import DataLoader
from minidl.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from minidl.train import RunFiles, RunPlan, evaluation
from minidl.train import run as training
from minidl.train.budget import EVAL_SHARE, FILES_S
from minidl.train.checkpoint import read_checkpoint
from minidl.train.run import (
    estimate_epochs,
    fit,
)


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


def test_the_bar_shows_the_whole_runs_time_left(monkeypatch):
    clock = FakeClock(monkeypatch)
    bar = training.Progress(4, "epoch 1/3", enabled=False, later_batches=8)
    for _ in range(2):
        clock.now += 2.0
        bar.update(8, 8.0, 4)
    assert bar.run_left_s == pytest.approx(10 * 2.0)  # 2 of this epoch and 8 later, 2 s each
    assert training._duration(3725) == "1:02:05"


def test_the_bars_speed_counts_training_time_only(monkeypatch):
    """An epoch's images/s is read after its evaluation (and a run's last, after the final
    pass): the time since the bar closed is not training time."""
    clock = FakeClock(monkeypatch)
    bar = training.Progress(4, "epoch 1", enabled=False)
    for _ in range(2):
        clock.now += 2.0
        bar.update(8, 8.0, 4)
    bar.close()
    clock.now += 100.0  # the evaluation
    assert bar.images_per_s == pytest.approx(16 / 4.0)


def test_a_budgeted_runs_bar_never_shows_more_time_left_than_the_budget_has(monkeypatch):
    """At a slow pace (small crops' steps counted at full size, a busy minute) 102 batches of
    2 s would read 204 s; the budget ends the run 26 s from now, so the bar says 26 s."""
    clock = FakeClock(monkeypatch)
    bar = training.Progress(4, "epoch 1", enabled=False, later_batches=100, deadline=30.0)
    for _ in range(2):
        clock.now += 2.0
        bar.update(8, 8.0, 4)
    assert bar.run_left_s == pytest.approx(26.0)
    clock.now = 40.0  # past the deadline (the final test pass): nothing left, never negative
    assert bar.run_left_s == 0.0


def test_a_budgeted_fit_gives_its_bars_the_budgets_end(tmp_path, monkeypatch):
    """fit hands each epoch's bar the moment the budget ends: the budget's seconds from the
    run's start (here 0 on the fake clock), earlier sessions' time counted."""
    deadlines = []
    progress = training.Progress

    def recording(*args, **kwargs):
        deadlines.append(kwargs.get("deadline"))
        return progress(*args, **kwargs)

    monkeypatch.setattr(training, "Progress", recording)
    SlowingClock(monkeypatch)
    _budgeted(tmp_path, 20.0)
    assert deadlines and all(d == pytest.approx(20.0) for d in deadlines)


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


def _budgeted(out, budget_s, on_step=None, resume=None, ema=False):
    model, optimizer, schedule, loader, test_loader = make_run()
    averaged = AveragedModel(model, get_ema_multi_avg_fn(0.9), use_buffers=True) if ema else None
    positions = []

    def record(step):
        positions.append(schedule.last_epoch)
        return on_step is not None and on_step(step)

    result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
                 test_loader=test_loader, progress=False, on_step=record,
                 files=RunFiles(out, resume=resume),
                 plan=RunPlan(time_budget_s=budget_s, averaged=averaged))  # fmt: skip
    return result, schedule, optimizer, positions


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


@pytest.mark.parametrize("eval_s, budget_s", [(3.0, 20.0), (6.0, 25.0), (10.0, 15.0), (10.0, 25.0)])
def test_a_budgeted_run_with_an_average_of_the_weights_reserves_its_evaluation_too(
    tmp_path, monkeypatch, eval_s, budget_s
):
    """Each epoch's end evaluates the model and its average: two test passes, both planned for
    and both within ``EVAL_SHARE`` (the 4-minute run of 698f97e with --ema ended 7 s late: its
    plan counted one pass before its first evaluation, which was its last)."""
    clock = SlowingClock(monkeypatch, eval_s=eval_s)  # 4 steps of 1 s an epoch
    result, schedule, _, _ = _budgeted(tmp_path, budget_s, ema=True)
    assert all("averaged_test_acc" in r for r in result.rows)
    share_s = EVAL_SHARE * budget_s  # both passes' 24 images fit it, or their first batch does
    assert all(r["test_images"] == (24 if 2 * eval_s <= share_s else 10) for r in result.rows)
    assert result.finished and result.elapsed_s == clock.now
    assert result.elapsed_s <= budget_s
    assert schedule.last_epoch == EPOCHS * 4 - 1


def _timed_test_passes(monkeypatch, clock):
    """Evaluating an image costs a third of training one (1/24 s here), as the budget assumes."""
    evaluate_, evaluate_tta_ = training.evaluate, training.evaluate_tta_within

    def timed_evaluate(model, loader):
        clock.now += training._images(loader) / 24
        return evaluate_(model, loader)

    def timed_evaluate_tta(model, loader, shifts, deadline):
        clock.now += 2 * len(shifts) * len(loader.images) / 24
        return evaluate_tta_(model, loader, shifts, None)

    monkeypatch.setattr(training, "evaluate", timed_evaluate)
    monkeypatch.setattr(training, "evaluate_tta_within", timed_evaluate_tta)


def _with_final_pass(out, final_images, budget_s=50.0, on_step=None):
    """make_run's run in ``budget_s`` seconds, ending on a six-view pass over ``final_images``
    images (10 a batch)."""
    model, optimizer, schedule, loader, subset = make_run()
    return fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=subset,
               plan=RunPlan(time_budget_s=budget_s, final_tta=True,
                            final_test_loader=DataLoader(images(final_images, 2), 10)),
               files=RunFiles(out), progress=False, on_step=on_step)  # fmt: skip


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
    result = _with_final_pass(tmp_path, final_images)
    last = result.rows[-1]
    assert result.finished and last["final_test_images"] == final_images
    assert last.get("final_test_tta_views") == views
    assert ("final_test_tta_acc" in last) == (views is not None)
    assert 50.0 - 1.0 - 1.0 <= result.elapsed_s <= 50.0  # no step or evaluation left unused
    said = "test-time augmentation in 6 views would take"
    assert (said in capsys.readouterr().out) == (views != 6)


def test_a_final_pass_slower_than_planned_ends_with_fewer_views_within_the_budget(
    tmp_path, monkeypatch, capsys
):
    """The machine slows down twofold as the final pass starts: its six views, planned at 5 s
    in all, would take 10 s and end the run about 5 s late. Views that would end past the budget's
    end (files' time kept) are not started: the run ends in time with the views done, said in
    a line, and the row keeps the pass's seconds."""
    clock = FakeClock(monkeypatch)
    _timed_test_passes(monkeypatch, clock)
    monkeypatch.setattr(evaluation, "time", clock)
    evaluate_tta_ = evaluation.evaluate_tta_within

    def slow_views(model, loader, shifts, deadline):
        def slow(x):  # twice a third of a training image
            clock.now += 2 * len(x.data) / 24
            return model(x)

        slow.eval = model.eval
        return evaluate_tta_(slow, loader, shifts, deadline)

    monkeypatch.setattr(training, "evaluate_tta_within", slow_views)
    result = _with_final_pass(tmp_path, 20)
    last = result.rows[-1]
    assert result.finished and result.elapsed_s <= 50.0 - FILES_S
    assert last["final_test_tta_views"] in (2, 4) and last["final_test_images"] == 20
    assert last["final_test_s"] == pytest.approx(last["final_test_tta_views"] * 40 / 24, abs=0.1)
    assert "test-time augmentation stopped after" in capsys.readouterr().out


def test_a_budget_too_short_for_the_whole_test_set_ends_on_its_last_evaluation(
    tmp_path, monkeypatch, capsys
):
    """A plain final pass that alone would take over half the budget (720 images: 30 s of 50)
    is left out, said in a line: the run's last evaluation (of the subset) is its result, and the
    run still ends within its budget. (A slow device: the whole set on the simulated GPU.)"""
    clock = FakeClock(monkeypatch)
    _timed_test_passes(monkeypatch, clock)
    result = _with_final_pass(tmp_path, 720)
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


def test_every_evaluation_measures_a_test_images_cost_again(tmp_path, monkeypatch, capsys):
    """Test images cost a twenty-fourth of a second at the first step's timing, then three
    times that from the fifth step on (steps unchanged). The six views' extra 100 images would
    take 4.2 s at the first cost, within 10% of the budget, but 12.5 s at the cost the first
    epoch's evaluation measures: the run reserves, and the final pass uses, the mirror pair."""
    clock = SlowingClock(monkeypatch, eval_s=1.0)
    evaluate_tta_ = training.evaluate_tta_within

    def timed_evaluate_tta(model, loader, shifts, deadline):
        clock.now += clock.eval_s * 2 * len(shifts) * training._images(loader) / 24
        return evaluate_tta_(model, loader, shifts, None)

    monkeypatch.setattr(training, "evaluate_tta_within", timed_evaluate_tta)

    def slower_tests(step):
        if step.step == 5:
            clock.eval_s = 3.0
        return False

    result = _with_final_pass(tmp_path, 20, budget_s=60.0, on_step=slower_tests)
    assert result.finished and result.elapsed_s <= 60.0
    assert result.rows[-1]["final_test_tta_views"] == 2
    assert "test-time augmentation in 6 views would take ~12 s more" in capsys.readouterr().out


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


FINAL_LR = 0.2 / 25 / 1e4  # OneCycleLR's last rate (max_lr / div_factor / final_div_factor)
