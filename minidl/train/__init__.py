"""Training: the step, the run around it, and what a run needs.

- ``loop.py``: ``train_step``, the five lines at the heart of every training program, and
  ``fit_simple``, the loop around it that a learner reads (about 20 lines);
- ``run.py``: ``fit``, a whole run (progress bar, metrics, checkpoints, resume, Ctrl-C, a time
  budget), and ``estimate_epochs``;
- ``plan.py``: what ``fit`` is told besides model, data and optimizer: ``RunFiles`` (its folder,
  a checkpoint to resume) and ``RunPlan`` (a time budget, small crops first, a final test pass);
- ``evaluation.py``: test passes (``evaluate``; ``evaluate_tta``: mirrored and shifted views);
- ``budget.py``: the steps that still fit a time budget, re-planned after every step;
- ``progressive.py``: small crops for the first part of a run, then full size;
- ``checkpoint.py``: what a run saves to continue exactly where it stopped;
- ``metrics.py``: per-epoch rows as metrics.csv and metrics.json, the confusion matrix.
"""

from .evaluation import TTA_SHIFTS, Evaluation, evaluate, evaluate_flipped, evaluate_tta
from .loop import fit_simple, train_step
from .plan import RunFiles, RunPlan
from .run import FitResult, Interrupted, NonFiniteLoss, Step, estimate_epochs, fit

__all__ = [
    "TTA_SHIFTS",
    "Evaluation",
    "FitResult",
    "Interrupted",
    "NonFiniteLoss",
    "RunFiles",
    "RunPlan",
    "Step",
    "estimate_epochs",
    "evaluate",
    "evaluate_flipped",
    "evaluate_tta",
    "fit",
    "fit_simple",
    "train_step",
]
