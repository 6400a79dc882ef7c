"""Budgeted training: a run that ends within its time budget with its schedule completed.

An epoch count fixed from the speed measured at the start is a guess, not a limit: a machine that
slows down (another program starts) stretches the run past its budget, and the end of the
learning-rate schedule, the small rates that settle the weights, comes late or never. So a
budgeted run plans again after every step: ``plan_steps`` counts the steps that still fit in the
time left, with an evaluation at each epoch's end and one when the run ends, and the schedule is
placed at the fraction of the run done, ``done / (done + steps that still fit)``. When no step
fits any more, the run ends; a partial last epoch is evaluated like a whole one. The speed is
the median of the last few steps, so a slowdown shortens the plan within a few steps; an
evaluation's cost is the last one measured (evaluation, checkpoint and files), scaled by how
much the steps have slowed since, or before the first one the cost of a test image measured on
one test batch right after the first step (``tested``), related to the steps' speed at the first
plan (a first step runs slow: heap, caches), plus a few seconds for the files. Until then a test
image counts a third of a training image, a forward pass without the backward. Measured,
because that third holds on a CPU but not where a step is bound by its kernel launches (a GPU,
or the simulated one): there a test batch of 500 images costs far more than a third of a
training batch's images. Every epoch's evaluation measures a test image's cost again, so the
reservation for the final pass follows the machine as the run goes on.

The run's final test pass may be fuller (test-time augmentation: several views of every image).
A short budget, or a busy machine, cannot afford it: the budget is given the passes to choose
from, fullest first, and reserves the fullest whose cost beyond the plainest fits
``FINAL_SHARE`` of the budget at the speed measured now (``final_choice``). The last choice may
be no final pass at all (0 images; the run's last evaluation, of a subset, is then its result),
taken only when even the plainest pass would use more than ``WHOLE_SHARE`` of the budget: a
device too slow for the whole test set in the time given (the simulated GPU; a budget of minutes).
On such a device even an epoch's evaluation of the subset may not fit: each evaluation then runs
the subset's first test batches that fit ``EVAL_SHARE`` of the budget (``test_images_now``).
A run that evaluates an average of the weights beside the model (``--ema``) runs two passes at
each epoch's end, both counted (``test_passes``).

A plan is an estimate: a machine that slows down during the final pass would end the run late.
So the final pass is given the moment the budget ends (less ``FILES_S`` for the files), and
a test-time augmentation view that would end past it, at the last view's pace, is not started
(``evaluate_tta``'s ``deadline``): the run ends with fewer views, in time, and says so.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

FILES_S = 2.0  # writing a checkpoint, the metrics and the curves, before one was measured
# steps timed before the first plan: their median, so one slow first step (it allocates the
# buffers every later step reuses) cannot set the speed alone
MIN_STEPS = 2
# a fuller final test pass than the plainest may take at most this share of the budget: its
# views add about a point of accuracy at the end of a long run, and a short run's minutes are
# worth more as training (docs/training.md, "Test-time augmentation")
FINAL_SHARE = 0.1
# the start-up timing that gives a budgeted run its first plan takes at most this share of it
# (and at least one step): a device whose steps are a large part of the budget trains instead
CALIBRATION_SHARE = 0.02
# the plainest final pass (every test image once) is kept unless it alone would take more than
# this share of the budget: then the run would be mostly evaluation, or end far past its budget
WHOLE_SHARE = 0.5
# an epoch's evaluation may take at most this share of the budget; a slower one runs only the
# first test batches that fit (at least one), so that a short budget is not all evaluation
EVAL_SHARE = 0.2


def plan_steps(
    time_left_s: float,
    step_s: float,
    eval_s: float,
    epoch_left: int,
    per_epoch: int,
    final_extra_s: float = 0.0,
) -> int:
    """How many more training steps fit in ``time_left_s`` seconds.

    Each step takes ``step_s``; ``epoch_left`` steps remain in the current epoch, then every
    ``per_epoch``; each epoch's end is evaluated (``eval_s``), and so is the run's end, which may
    fall inside an epoch. An epoch's evaluation counts as the final one when the run ends there:
    after it, at least one step and another evaluation must still fit for the run to go on.
    The run's end costs ``final_extra_s`` more (a last, fuller test pass), reserved from the start.
    """
    if step_s <= 0 or per_epoch < 1:
        raise ValueError(
            f"plan_steps: need step_s > 0 and per_epoch >= 1, got {step_s}, {per_epoch}"
        )
    left = time_left_s - eval_s - final_extra_s  # the final evaluation
    steps, stretch = 0, epoch_left
    cycle = per_epoch * step_s + eval_s  # a whole epoch and its evaluation
    while True:
        if left < stretch * step_s:  # the run ends inside this stretch of steps
            return steps + max(0, int(left // step_s))
        steps, left = steps + stretch, left - stretch * step_s
        if left < eval_s + step_s:  # the epoch's evaluation is the final one
            return steps
        left -= eval_s
        if stretch == per_epoch and left > 2 * cycle:  # skip the epochs that surely fit at once
            whole = int(left // cycle) - 1
            steps, left = steps + whole * per_epoch, left - whole * cycle
        stretch = per_epoch


class TimeBudget:
    """The speed a budgeted run measures, and the steps that still fit in its ``seconds``.

    ``stepped(seconds)`` after every training step; ``evaluated(seconds)`` after each epoch's
    end (evaluation and files); ``steps_left(elapsed_s, epoch_left, per_epoch)`` is
    ``plan_steps`` for the time the budget has left, keeping ``margin`` of it (a fraction) to
    spare; None until ``MIN_STEPS`` steps were timed. ``test_images`` and ``batch_size`` size
    the first evaluation's estimate. ``final_images``: the images the run's end evaluates more,
    one count per final pass to choose from, fullest first; ``final_choice()`` is the index of
    the one reserved. ``tested(seconds, images)``: one test batch of ``images`` took ``seconds``
    (``wants_test_timing()`` says when: after the first step, so the first plan has it), and
    again after every epoch's evaluation (``images`` then its test images; ``test_batch`` stays
    the first batch's size); test images are counted at the last cost measured, scaled by how
    much the steps have slowed since, or before the first at a third of a training image.
    ``test_passes``: the passes over the test images each epoch's end runs (2 when an average
    of the weights is evaluated beside the model).
    """

    def __init__(
        self,
        seconds: float,
        test_images: int,
        batch_size: int,
        margin: float = 0.005,
        window: int = 5,
        final_images: int | Sequence[int] = 0,
        test_passes: int = 1,
    ):
        if not seconds > 0:
            raise ValueError(f"TimeBudget: seconds must be > 0, got {seconds}")
        if test_passes < 1:
            raise ValueError(f"TimeBudget: test_passes must be >= 1, got {test_passes}")
        self.test_passes = test_passes
        self.seconds, self.margin_s = seconds, margin * seconds
        self.test_images, self.batch_size = test_images, batch_size
        choices = (final_images,) if isinstance(final_images, int) else tuple(final_images)
        if not choices or list(choices) != sorted(choices, reverse=True) or choices[-1] < 0:
            raise ValueError(
                f"TimeBudget: final_images must be image counts >= 0, fullest first, "
                f"got {final_images!r}"
            )
        self.final_images = choices
        self.step_times: deque[float] = deque(maxlen=window)
        self.eval_s: float | None = None
        self.eval_step_s = 0.0  # the step time when eval_s was measured
        self.test_image_s: float | None = None  # a test image's measured cost
        self.test_batch = 0  # the images of the test batch that measured it
        self.test_step_s = 0.0  # the step time when test_image_s was measured

    def stepped(self, seconds: float) -> None:
        self.step_times.append(seconds)
        if self.test_image_s is not None and self.test_step_s <= 0 and self._planning():
            self.test_step_s = self.step_s()  # the speed the test image's cost is related to

    def wants_test_timing(self) -> bool:
        """True once, after the first step, while a test image's cost was not measured (before
        the first plan, and after the step whose launches a counter leaves out anyway)."""
        return self.test_image_s is None and self.test_images > 0 and bool(self.step_times)

    def tested(self, seconds: float, images: int) -> None:
        self.test_image_s, self.test_batch = seconds / images, self.test_batch or images
        if self._planning():
            self.test_step_s = self.step_s()

    def _planning(self) -> bool:
        return len(self.step_times) >= MIN_STEPS

    def evaluated(self, seconds: float) -> None:
        self.eval_s, self.eval_step_s = seconds, self.step_s()

    def step_s(self) -> float:
        return statistics.median(self.step_times) if self.step_times else 0.0

    def test_images_now(self) -> int:
        """The test images an epoch's evaluation runs (in each of its ``test_passes``): all
        ``test_images``, or, when its passes would take more than ``EVAL_SHARE`` of the budget
        at the measured cost, the first whole test batches that fit it (at least one)."""
        if self.test_image_s is None or self.test_batch <= 0:
            return self.test_images
        batch_s = self.test_passes * self.test_s(self.test_batch)
        batches = int(EVAL_SHARE * self.seconds / max(batch_s, 1e-9))
        return min(self.test_images, max(1, batches) * self.test_batch)

    def eval_estimate(self) -> float:
        """Seconds the next evaluation (with its files) will take at the current speed."""
        step_s = self.step_s()
        if self.eval_s is None or self.eval_step_s <= 0:
            return self.test_passes * self.test_s(self.test_images_now()) + FILES_S
        return self.eval_s * step_s / self.eval_step_s

    def test_s(self, images: int) -> float:
        """Seconds to evaluate ``images`` at the current speed: at the measured cost of a test
        image, before it is measured a third of a training image's."""
        if self.test_image_s is None or self.test_step_s <= 0:
            return images / self.batch_size * self.step_s() / 3
        return images * self.test_image_s * self.step_s() / self.test_step_s

    def final_choice(self) -> int:
        """The index in ``final_images`` of the final pass to reserve: the fullest whose images
        beyond the plainest's take at most ``FINAL_SHARE`` of the budget (0 before a step). When
        the last choice is no pass (0 images), it is taken only if the plainest pass itself would
        take more than ``WHOLE_SHARE`` of the budget."""
        passes = self.final_images
        if len(passes) > 1 and passes[-1] == 0:  # the run may end without a final pass
            if self.test_s(passes[-2]) > WHOLE_SHARE * self.seconds:
                return len(passes) - 1
            passes = passes[:-1]
        extra = [n - passes[-1] for n in passes]  # beyond the plainest
        fits = (i for i, n in enumerate(extra) if self.test_s(n) <= FINAL_SHARE * self.seconds)
        return next(fits, len(extra) - 1)

    def steps_left(self, elapsed_s: float, epoch_left: int, per_epoch: int) -> int | None:
        if not self._planning():
            return None
        time_left = self.seconds - self.margin_s - elapsed_s
        step_s = max(self.step_s(), 1e-9)
        final_extra_s = self.test_s(self.final_images[self.final_choice()])
        return plan_steps(
            time_left, step_s, self.eval_estimate(), epoch_left, per_epoch, final_extra_s
        )
