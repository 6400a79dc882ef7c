"""Every lesson's cells are safe to re-run, as a learner in a notebook re-runs them.

Each lesson runs cell by cell in one namespace (quick mode, pictures to a temporary folder); every
code cell runs a second time straight after its first run. The second run must not raise and must
print what the first printed: a cell that accumulates gradients without zeroing them, or mutates
what an earlier cell built, prints something else (or fails an assert) the second time.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from helpers.cifar import write_tiny_cifar
from helpers.lessons import LESSONS, run_python

# Timings (seconds, images per second) legitimately differ between two runs of a cell: they are
# masked before the outputs are compared.
VARIES = re.compile(
    r"\d+(\.\d+)?\s*(ms|s|seconds|img/s|images/s|steps/s|x faster|x slower)\b"
    r"|\bin \d+(\.\d+)? s\b|load average"
)

RUN_TWICE = textwrap.dedent(
    """
    import contextlib, io, json, linecache, re, sys
    path, report = sys.argv[1], sys.argv[2]
    sys.argv = [path, "--quick"]
    sys.path.insert(0, path.rsplit("/", 1)[0])
    text = open(path).read()
    marker = re.compile(r"^# %%.*$", re.M)
    namespace = {"__name__": "__main__"}
    results, stopped = [], False
    for k, (head, body) in enumerate(zip(marker.findall(text), marker.split(text)[1:])):
        if "[markdown]" in head:
            continue
        name = f"<cell {k}>"
        linecache.cache[name] = (len(body), None, body.splitlines(True), name)
        code = compile(body, name, "exec")
        outputs = []
        for attempt in range(2):
            buffer = io.StringIO()
            error = None
            with contextlib.redirect_stdout(buffer):
                try:
                    exec(code, namespace)
                except SystemExit:  # the lesson stopped early (no GPU, no PyTorch)
                    stopped = True
                except BaseException as e:  # the report says which cell and how
                    import traceback
                    error = "".join(traceback.format_exception(e))
            outputs.append({"out": buffer.getvalue(), "error": error})
            if error or stopped:
                break
        results.append({"cell": k, "first_line": body.strip().splitlines()[0], "runs": outputs})
        with open(report, "w") as f:
            json.dump(results, f)
        if error or stopped:
            break
    """
)


def normalised(text: str) -> list[str]:
    """The printed lines, with timing-dependent numbers masked and runs of spaces made one.

    Spaces too: a time printed right-aligned in a fixed width pads with more spaces when it has
    fewer digits, so the same line reads `(    1.2 s)` once and `(     0.9 s)` the next time.
    """
    return [" ".join(VARIES.sub("<time>", line).split()) for line in text.splitlines()]


def test_normalised_masks_timings_whatever_their_width():
    first = "  width 0.0625 cpu :    1.234 s  (   12.5 ms)"
    again = "  width 0.0625 cpu :    0.981 s  (    9.9 ms)"
    assert normalised(first) == normalised(again) == ["width 0.0625 cpu : <time> ( <time>)"]
    assert normalised("loss 2.31") != normalised("loss 2.30")  # what is not a timing still counts


def lessons():
    """Every lesson, by name (lesson 15's training cell included: it starts from the model's
    saved initial state, a fresh optimizer, schedule and generators each time it runs)."""
    for path in LESSONS:
        yield pytest.param(path, id=path.stem)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", list(lessons()))
def test_each_cell_runs_twice_with_the_same_result(lesson: Path, tmp_path: Path):
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path / "out"), MPLBACKEND="Agg")
    env["MINIDL_SIMULATE_CUDA"] = "1"  # lesson 16's GPU code path, on the CPU
    # fixed thread counts: the load-following policy gives OpenBLAS and the pool fewer threads
    # while other programs are busy, and a matrix product rounds differently with one thread and
    # two (docs/training.md), so on a loaded machine lesson 15's training cell printed a loss of
    # 2.339 once and 2.335 again (2026-12-07, two busy processes beside it; idle, the same)
    env.update(MINIDL_THREADS="2", OPENBLAS_NUM_THREADS="2")
    env["MINIDL_CIFAR10"] = str(write_tiny_cifar(tmp_path / "data" / "cifar-10-batches-py"))
    report = tmp_path / "report.json"
    proc = run_python(["-c", RUN_TWICE, str(lesson), str(report)], env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(report.read_text())
    for cell in results:
        first, *again = cell["runs"]
        where = f"{lesson.name} cell {cell['cell']} ({cell['first_line']!r})"
        assert first["error"] is None, f"{where} failed on its first run:\n{first['error']}"
        if not again:  # the lesson stopped here (SKIPPED: no GPU, no PyTorch)
            assert "SKIPPED:" in first["out"], f"{where} ended the lesson:\n{first['out']}"
            continue
        (second,) = again
        assert second["error"] is None, f"{where} failed when run again:\n{second['error']}"
        a, b = normalised(first["out"]), normalised(second["out"])
        diff = [f"  first: {x}\n  again: {y}" for x, y in zip(a, b) if x != y]
        assert a == b, f"{where} printed something else when run again:\n" + "\n".join(
            diff[:8] or [f"  {len(a)} lines, then {len(b)}"]
        )
