"""Progressive resizing (``RunPlan(low_res=...)``, ``minidl.train.progressive``): which batches are
small, a resume across the switch, a budget that counts small steps at their cost, the CIFAR
crops."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.training import EPOCHS, FakeClock, loss_fn, make_run, weights

from minidl.data import Compose, DataLoader, RandomCrop, RandomHorizontalFlip
from minidl.data.transforms import cifar10_train_transform
from minidl.optim.swa_utils import update_bn
from minidl.train import RunFiles, RunPlan
from minidl.train import run as training
from minidl.train.checkpoint import read_checkpoint
from minidl.train.progressive import PROBE_STEPS, SmallImagesFirst
from minidl.train.run import fit

SMALL = Compose([RandomCrop(4, padding=0), RandomHorizontalFlip()])  # 4x4 of the 8x8 images


def _record_sizes(monkeypatch):
    """The height of every batch trained, in order."""
    sizes, step = [], training.train_step

    def recording_step(model, loss_fn, optimizer, x, y):
        sizes.append(x.shape[-1])
        return step(model, loss_fn, optimizer, x, y)

    monkeypatch.setattr(training, "train_step", recording_step)
    return sizes


@pytest.mark.parametrize("share", [0.5, 0.25, 1.0])
def test_the_first_share_of_a_run_trains_on_the_small_batches(monkeypatch, share):
    sizes = _record_sizes(monkeypatch)
    model, optimizer, schedule, loader, test_loader = make_run()
    own = loader.transform
    fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=test_loader,
        progress=False, plan=RunPlan(low_res=(share, SMALL)))  # fmt: skip
    steps = EPOCHS * len(loader)  # 12
    small = round(share * steps)
    assert sizes == [4] * small + [8] * (steps - small)
    assert loader.transform is own  # the loader is given back as it came


def test_a_run_stopped_in_its_small_part_resumes_bit_for_bit(tmp_path, monkeypatch):
    """Stopped at step 5 of 12 (small until step 6), resumed: the same weights as a run that
    was never stopped. The resume replays the skipped batches at their own size, so the
    augmentation generator is where it was."""
    sizes = _record_sizes(monkeypatch)
    model, optimizer, schedule, loader, test_loader = make_run()
    run = dict(
        schedule=schedule,
        test_loader=test_loader,
        progress=False,
        plan=RunPlan(low_res=(0.5, SMALL)),
    )
    fit(model, loss_fn, loader, optimizer, EPOCHS, **run)
    whole, whole_sizes = weights(model), list(sizes)

    sizes.clear()
    model, optimizer, schedule, loader, test_loader = make_run()
    run.update(schedule=schedule, test_loader=test_loader)
    stopped = fit(
        model,
        loss_fn,
        loader,
        optimizer,
        EPOCHS,
        files=RunFiles(tmp_path),
        on_step=lambda s: s.step == 5,
        **run,
    )
    assert not stopped.finished
    model, optimizer, schedule, loader, test_loader = make_run()
    run.update(schedule=schedule, test_loader=test_loader)
    resume = read_checkpoint(tmp_path / "last.npz")
    fit(model, loss_fn, loader, optimizer, EPOCHS, files=RunFiles(tmp_path, resume=resume), **run)
    assert sizes == whole_sizes
    resumed = weights(model)
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole)


def _test_transform(x, rng):
    """A test loader's own transform (not the training one's flips, not none)."""
    return (x / 100.0).astype(np.float32)


def _stopped_on_small_crops(out):
    """make_run's run with its first half on small crops, stopped after epoch 1 (step 4 of
    12, still small): its model and checkpoint."""
    model, optimizer, schedule, loader, test_loader = make_run()
    test_loader.transform = _test_transform
    fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=test_loader,
        progress=False, files=RunFiles(out),
        plan=RunPlan(low_res=(0.5, SMALL), stop_after_epochs=1))  # fmt: skip
    return model, read_checkpoint(out / "last.npz")


def test_an_evaluation_on_small_crops_uses_full_size_batch_norm_statistics(tmp_path):
    """The epoch's test pass (and the checkpoint) hold batch norm's statistics recomputed over
    full-size training images through the test's transform, not the small crops' running ones."""
    model, checkpoint = _stopped_on_small_crops(tmp_path)
    saved = checkpoint["model"]
    _, _, _, loader, _ = make_run()
    expected, _, _, _, _ = make_run()
    expected.load_state_dict(saved)
    full = SmallImagesFirst(loader, 0.5, SMALL).full_size_batches(_test_transform)
    update_bn(full, expected, dropout=False)
    for name in ("1.running_mean", "1.running_var"):
        want = expected.state_dict()[name].numpy()
        np.testing.assert_allclose(saved[name].numpy(), want, rtol=1e-5, err_msg=name)
    assert int(saved["1.num_batches_tracked"].numpy()) == 4  # (32 training images: 4 batches)


def test_the_full_size_statistics_leave_the_training_as_it_was(tmp_path, monkeypatch):
    """The recomputation draws no dropout masks and moves no weight: the same weights after a
    whole run as without it."""
    with_them = weights(_whole_run_on_small_crops_first())
    monkeypatch.setattr(training, "update_bn", lambda *a, **k: None)
    without = weights(_whole_run_on_small_crops_first())
    for name in with_them:
        if "running" not in name and "num_batches" not in name:
            np.testing.assert_array_equal(with_them[name], without[name], err_msg=name)


def _whole_run_on_small_crops_first():
    model, optimizer, schedule, loader, test_loader = make_run()
    fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=test_loader,
        progress=False, plan=RunPlan(low_res=(0.75, SMALL)))  # fmt: skip
    return model


class PixelClock(FakeClock):
    """A step takes a second per full-size image's pixels (a 4x4 batch of 8x8 images: 1/4 s),
    or with ``by_pixels=False`` a second whatever its size (a GPU bound by launches, not
    pixels); an evaluation 3 s."""

    def __init__(self, monkeypatch, by_pixels=True):
        super().__init__(monkeypatch)
        step, evaluate = training.train_step, training.evaluate

        def timed_step(model, loss_fn, optimizer, x, y):
            if by_pixels:
                self.now += x.shape[-1] * x.shape[-2] / 64 - 1.0  # FakeClock's step adds 1 s
            return step(model, loss_fn, optimizer, x, y)

        def timed_evaluate(model, loader):
            self.now += 3.0 * training._images(loader) / 24  # make_run's 24 test images: 3 s
            return evaluate(model, loader)

        monkeypatch.setattr(training, "train_step", timed_step)
        monkeypatch.setattr(training, "evaluate", timed_evaluate)


def _budgeted_steps(budget_s, low_res, by_pixels=True):
    """A budgeted run under ``PixelClock`` (patched for this run only)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        clock = PixelClock(monkeypatch, by_pixels)
        sizes = _record_sizes(monkeypatch)
        positions = []
        model, optimizer, schedule, loader, test_loader = make_run()
        result = fit(model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule,
                     test_loader=test_loader, progress=False,
                     plan=RunPlan(time_budget_s=budget_s, low_res=low_res),
                     on_step=lambda s: positions.append(schedule.last_epoch))  # fmt: skip
    return result, clock, sizes, positions, schedule


def test_a_budget_counts_small_steps_at_their_pixels_cost():
    """Small steps take a quarter of the time: the budgeted run trains more steps in the same
    time, still ends within it with its schedule completed, and switches to full size half way
    through its schedule, after timing its first steps at full size."""
    budget_s = 48.0
    full, _, full_sizes, _, _ = _budgeted_steps(budget_s, None)
    result, clock, sizes, positions, schedule = _budgeted_steps(budget_s, (0.5, SMALL))
    assert result.finished and budget_s - 1.0 - 3.0 <= clock.now <= budget_s
    assert schedule.last_epoch == EPOCHS * 4 - 1 and positions == sorted(positions)
    assert set(full_sizes) == {8} and len(sizes) > len(full_sizes) + 4
    assert sizes[:PROBE_STEPS] == [8] * PROBE_STEPS and sizes[PROBE_STEPS] == 4
    switch = sizes.index(8, PROBE_STEPS)
    assert set(sizes[switch:]) == {8}  # never back to small
    # the switch came when the schedule was half way, within a step of the plan's resolution
    assert positions[switch - 1] < 0.5 * schedule.last_epoch + 2
    assert positions[switch] >= 0.5 * schedule.last_epoch - 2


def test_when_small_steps_cost_as_much_as_full_ones_the_budget_knows_and_switches_once():
    """The pixels would say a small step costs a quarter; timed, it costs a whole one. The run
    counts it so: as many steps as without small images, within the budget, one switch."""
    budget_s = 48.0
    _, _, plain, _, _ = _budgeted_steps(budget_s, None, by_pixels=False)
    result, clock, sizes, positions, schedule = _budgeted_steps(
        budget_s, (0.5, SMALL), by_pixels=False
    )
    assert result.finished and clock.now <= budget_s
    assert abs(len(sizes) - len(plain)) <= 1  # a small step bought nothing, and counted so
    switches = sum(a != b for a, b in zip(sizes, sizes[1:]))
    assert switches == 2  # the probe's full steps -> small -> full, never back
    # counted at the pixels' quarter, the plan would have shrunk 4x and switched far too early
    switch = sizes.index(8, PROBE_STEPS)
    assert abs(positions[switch - 1] - 0.5 * schedule.last_epoch) <= 2


def test_the_switch_to_full_size_is_for_good():
    """A plan that grows after the switch (full steps faster than estimated) lowers the fraction
    done below the share again: the run stays at full size."""
    _, _, _, loader, _ = make_run()
    switch = SmallImagesFirst(loader, 0.5, SMALL, probe_steps=2)
    chosen = []
    for done, fraction in enumerate([0.0, 0.1, 0.2, 0.45, 0.55, 0.48, 0.3, 0.7]):
        switch.choose(fraction, done)
        chosen.append("small" if loader.transform is SMALL else "full")
    assert chosen == ["full", "full", "small", "small", "full", "full", "full", "full"]


def test_small_images_first_checks_its_arguments():
    _, _, _, loader, _ = make_run()
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\], got 1.5"):
        SmallImagesFirst(loader, 1.5, SMALL)
    with pytest.raises(TypeError, match="needs a minidl.data.DataLoader"):
        SmallImagesFirst([(1, 2)], 0.5, SMALL)
    switch = SmallImagesFirst(loader, 0.5, SMALL)
    x = np.zeros((2, 3, 4, 4))
    assert switch.cost(x) == 16 / 64


def test_cifar_small_crops_shift_by_up_to_four_pixels_without_padding():
    """size 24: a window of the unpadded 32x32 image (9 offsets each way, no black border);
    size 28: padded by 2, the same 9 offsets."""
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, (64, 3, 32, 32)).astype(np.uint8)  # no zero anywhere
    crop24 = cifar10_train_transform(size=24).transforms[0]
    x = crop24(image, np.random.default_rng(1))
    assert x.shape == (64, 3, 24, 24) and (x > 0).all()
    offsets = {
        (dy, dx)
        for n in range(64)
        for dy in range(9)
        for dx in range(9)
        if np.array_equal(x[n], image[n, :, dy : dy + 24, dx : dx + 24])
    }
    assert len(offsets) > 20 and all(0 <= dy <= 8 and 0 <= dx <= 8 for dy, dx in offsets)
    crop28 = cifar10_train_transform(size=28).transforms[0]
    assert (crop28.size, crop28.padding) == (28, 2)
    full = cifar10_train_transform().transforms[0]
    assert (full.size, full.padding) == (32, 4)
    with pytest.raises(ValueError, match="size must be in 8..32, got 40"):
        cifar10_train_transform(size=40)


def test_a_dataloader_reads_its_transform_for_every_batch():
    """What the switch relies on: a transform swapped between two batches applies to the next."""
    data = (np.zeros((8, 8, 8, 3), np.uint8), np.zeros(8, np.int64))
    loader = DataLoader(data, 2, transform=RandomHorizontalFlip())
    batches = iter(loader)
    assert next(batches)[0].shape[-1] == 8
    loader.transform = RandomCrop(4, padding=0)
    assert next(batches)[0].shape[-1] == 4


def test_the_bars_run_eta_counts_the_steps_left_at_full_size(monkeypatch):
    """20 full-size steps fit; a 4x-faster small step's pace times 20 would show a quarter of
    the time left, so the bar counts 80 small steps' worth (and the one it is about to tick)."""
    clock = FakeClock(monkeypatch)
    bar = training.Progress(4, "epoch 1", enabled=False)
    clock.now += 0.25
    training._follow_budget(None, 10, 5, 20, bar, cost=0.25)
    bar.update(8, 8.0, 4)
    assert bar.run_left_s == pytest.approx(20 * 1.0)  # 20 full-size steps of a second
