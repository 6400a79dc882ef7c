"""Every lesson, opened as a notebook, runs in a real Jupyter kernel and shows its pictures inline.

jupytext turns each lesson's ``# %%`` cells into a notebook, as ``jupytext --to ipynb`` does for a
learner (examples/README.md, "As notebooks"), and nbclient runs it in an IPython kernel started in
``examples/``, where Jupyter starts the kernel of a notebook written next to its lesson. A kernel
has no command line, so quick mode comes from ``MINIDL_LESSON_ARGS=--quick`` (read by
``_lesson.parse_args``). Pictures go to a temporary folder, lesson 15 reads a tiny generated
CIFAR-10 and lesson 16 runs on the simulated GPU, as in test_examples.py and
test_lessons_rerun.py. ``MPLBACKEND`` is left unset for the kernel, so matplotlib is on Jupyter's
inline backend, as a learner's is.

The notebook tests skip without the ``lessons`` extra (``pip install -e ".[lessons]"``): jupytext,
nbclient, nbformat and ipykernel.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers.cifar import write_tiny_cifar
from helpers.lessons import LESSONS, run_python
from helpers.paths import ROOT

EXAMPLES = ROOT / "examples"
IMAGES = ("image/png", "image/svg+xml")
SAVED = ("picture saved: ", "graph drawn: ")  # what _lesson prints for each picture it writes
CELL_TIMEOUT_S = 240  # one cell; lesson 15's training cell, the longest, takes ~20 s in --quick


@pytest.fixture(scope="module")
def notebook_tools():
    """jupytext, nbclient and nbformat, with ipykernel for the kernel; skips without them."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    return jupytext, nbclient, nbformat


@pytest.fixture
def lesson_env(monkeypatch, tmp_path: Path) -> Path:
    """The kernel's environment (it inherits this process's); returns the pictures' folder."""
    out = tmp_path / "out"
    monkeypatch.setenv("MINIDL_EXAMPLES_OUTPUT", str(out))
    monkeypatch.setenv("MINIDL_LESSON_ARGS", "--quick")
    monkeypatch.setenv("MINIDL_SIMULATE_CUDA", "1")  # lesson 16's GPU code path, on the CPU
    cifar = write_tiny_cifar(tmp_path / "data" / "cifar-10-batches-py")
    monkeypatch.setenv("MINIDL_CIFAR10", str(cifar))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # ipykernel then picks the inline backend
    return out


def run_notebook(lesson: Path, tools, keep: Path):
    """The lesson as a notebook, executed in a fresh kernel: ``(notebook, stop)`` where ``stop``
    is None, or the message of the ``_lesson.stop_here`` that ended it early. The executed
    notebook is written to ``keep`` (a temporary folder) to look at when a test fails."""
    jupytext, nbclient, nbformat = tools
    from nbclient.exceptions import CellExecutionError

    notebook = jupytext.read(lesson)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLES)}},  # the kernel's working folder
    )
    stop = None
    try:
        client.execute()
    except CellExecutionError as error:
        if error.ename != "_Stop":  # stop_here's exception; anything else is a failure
            pytest.fail(f"{lesson.name} failed in the kernel:\n{str(error)[-4000:]}")
        stop = error.evalue
    finally:
        nbformat.write(notebook, keep / f"{lesson.stem}.ipynb")
    return notebook, stop


def outputs(notebook):
    return [out for cell in notebook.cells for out in cell.get("outputs", [])]


def printed(notebook) -> str:
    return "".join(out.get("text", "") for out in outputs(notebook) if out.output_type == "stream")


def images(notebook) -> list[dict]:
    """The pictures shown: display outputs with a PNG or an SVG."""
    return [
        out.data
        for out in outputs(notebook)
        if out.output_type in ("display_data", "execute_result") and set(IMAGES) & set(out.data)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_as_a_notebook_with_its_pictures_inline(
    lesson: Path, notebook_tools, lesson_env: Path, tmp_path: Path
):
    notebook, stop = run_notebook(lesson, notebook_tools, tmp_path)
    text = printed(notebook)
    assert text.strip(), f"{lesson.name} printed nothing in the kernel"
    if stop is not None:  # lessons 16 and 17 without a GPU or PyTorch
        assert stop.startswith("SKIPPED:") and "SKIPPED:" in text, stop
        return
    saved = sum(line.strip().startswith(SAVED) for line in text.splitlines())
    shown = images(notebook)
    assert saved, f"{lesson.name} saved no picture"
    assert len(shown) == saved, (  # each once: not also by the inline backend at the cell's end
        f"{lesson.name} saved {saved} pictures but showed {len(shown)} inline:\n{text[-2000:]}"
    )
    for picture in lesson_env.iterdir():
        if picture.suffix == ".png":
            assert picture.stat().st_size > 1000, f"{picture.name} looks empty"


FAKE_DOT = """#!/bin/sh
printf '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="20"><text x="2" y="15">fake \
dot</text></svg>'
"""

GRAPH_LESSONS = [p for p in LESSONS if "render_graph(" in p.read_text()]


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="the stand-in for Graphviz's dot is a shell script")
@pytest.mark.parametrize("lesson", GRAPH_LESSONS, ids=[p.stem for p in GRAPH_LESSONS])
def test_graphviz_graphs_are_shown_inline_as_svg(
    lesson: Path, notebook_tools, lesson_env: Path, tmp_path: Path, monkeypatch
):
    """With Graphviz, the lessons that draw an autograd graph (1 and 9) show its SVG inline.
    CI has no Graphviz: a stand-in ``dot`` first on PATH writes a small SVG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dot").write_text(FAKE_DOT)
    (bin_dir / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    notebook, stop = run_notebook(lesson, notebook_tools, tmp_path)
    assert stop is None
    svgs = [data["image/svg+xml"] for data in images(notebook) if "image/svg+xml" in data]
    assert any("fake dot" in svg for svg in svgs), f"{lesson.name} showed no graph SVG inline"
    assert "graph drawn: " in printed(notebook)


def test_lesson_flags_come_from_the_environment_where_there_is_no_command_line(tmp_path: Path):
    """``MINIDL_LESSON_ARGS`` gives a lesson its flags in a notebook; on a command line the
    command line's own flags win. As a script nothing is shown inline (no kernel)."""
    code = textwrap.dedent(
        """
        import _lesson
        args = _lesson.parse_args("test", quick=True)
        print(args.quick, _lesson.IN_NOTEBOOK)
        print(args.output.name)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES), MPLBACKEND="Agg")
    env["MINIDL_LESSON_ARGS"] = "--quick --output " + shlex.quote(str(tmp_path / "from env"))
    proc = run_python(["-c", code], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["True False", "from env"]
    proc = run_python(["-c", code, "--output", str(tmp_path / "argv")], env)
    assert proc.stdout.splitlines() == ["True False", "argv"], proc.stderr[-2000:]
    env.pop("MINIDL_LESSON_ARGS")
    proc = run_python(["-c", code], env)
    assert proc.stdout.splitlines()[0] == "False False", proc.stderr[-2000:]


def test_generated_notebooks_stay_out_of_git():
    """``jupytext --to ipynb`` writes the notebooks next to the lessons: git ignores them."""
    probe = "examples/01_scalar_chain_rule.ipynb"
    proc = subprocess.run(
        ["git", "check-ignore", "-q", probe], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode == 128:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"{probe} is not git-ignored"
