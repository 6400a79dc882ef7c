"""minidl.train.fit and its loop: a tiny model learns, writes its files, evaluates, stops on a
non-finite loss; fit_simple is its loop without the chores."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers.paths import ROOT
from helpers.training import (
    EPOCHS,
    images,
    loss_fn,
    make_run,
    weights,
)

import minidl as md
import minidl.functional as F
from minidl import nn, optim
from minidl.data import DataLoader
from minidl.train import RunFiles, RunPlan, fit_simple
from minidl.train.checkpoint import read_checkpoint
from minidl.train.evaluation import evaluate, evaluate_tta
from minidl.train.run import (
    NonFiniteLoss,
    fit,
    train_step,
)
from minidl.viz import plot_curves


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
                 plan=RunPlan(final_test_loader=whole, final_tta=True),
                 files=RunFiles(tmp_path), progress=False)  # fmt: skip
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


def test_plot_curves_takes_fit_rows_with_a_wall_time_panel(full_run, tmp_path):
    result = full_run[0]
    path = plot_curves(result.rows, tmp_path / "rows.png")
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, optimizer, schedule, loader, test_loader = make_run()
    calls = [0]

    def diverging(output, y):
        calls[0] += 1
        loss = F.cross_entropy(output, y)
        return loss * float("nan") if calls[0] == 6 else loss  # step 2 of epoch 2

    with pytest.raises(NonFiniteLoss, match=r"nan at batch 2 of epoch 2.*last\.npz") as caught:
        fit(model, diverging, loader, optimizer, EPOCHS, schedule=schedule,
            test_loader=test_loader, files=RunFiles(tmp_path), progress=False)  # fmt: skip
    assert (caught.value.epoch, caught.value.batch) == (1, 1)
    saved = read_checkpoint(tmp_path / "last.npz")
    assert (saved["epoch"], saved["batch"]) == (1, 0)
    arrays = [v.numpy() if isinstance(v, md.Tensor) else v for v in saved["model"].values()]
    assert all(np.isfinite(a).all() for a in arrays)


def test_the_docs_example_of_fit_runs_and_resumes(tmp_path, monkeypatch, capsys):
    """docs/training.md's "From Python" example, as written: a run with its files and a final
    pass, then the same run resumed from its checkpoint (finished: nothing more to train)."""
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    model, optimizer, schedule, loader, test_loader = make_run()
    namespace = dict(
        model=model, loss_fn=loss_fn, train_loader=loader, optimizer=optimizer, epochs=EPOCHS,
        schedule=schedule, test_subset=test_loader, whole_test_set=test_loader,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/training.md", "exec"), namespace)
    assert (tmp_path / "runs" / "mine" / "last.npz").is_file()
    assert read_checkpoint(tmp_path / "runs" / "mine" / "last.npz")["note"] == "what I tried"
    assert namespace["result"].finished and len(namespace["result"].rows) == EPOCHS
    assert "final_test_tta_acc" in namespace["result"].rows[-1]
