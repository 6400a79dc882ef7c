"""What the tests of minidl.train share: one uninterrupted run, trained once per session."""

from __future__ import annotations

import pytest
from helpers.training import (
    EPOCHS,
    loss_fn,
    make_run,
    weights,
)

from minidl.train import RunFiles
from minidl.train.run import (
    fit,
)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted run of EPOCHS epochs: (result, final weights, output folder)."""
    out = tmp_path_factory.mktemp("full")
    model, optimizer, schedule, loader, test_loader = make_run()
    result = fit(
        model, loss_fn, loader, optimizer, EPOCHS, schedule=schedule, test_loader=test_loader,
        files=RunFiles(out, checkpoint_extra={"note": "mine"}), progress=False,
    )  # fmt: skip
    return result, weights(model), out, schedule
