"""Every lesson in examples/ runs, in quick mode, as a learner runs it: ``python examples/NN_*.py``.

Pictures go to a temporary folder (``MINIDL_EXAMPLES_OUTPUT``) so the tests leave nothing behind,
and the training lesson reads a tiny generated CIFAR-10-format set (``MINIDL_CIFAR10``) so CI never
needs the real data.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.cifar import write_tiny_cifar
from helpers.lessons import LESSONS, run_python
from helpers.paths import ROOT


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    return write_tiny_cifar(tmp_path_factory.mktemp("data") / "cifar-10-batches-py")


def test_lessons_found():
    assert len(LESSONS) >= 1
    numbers = [p.name[:2] for p in LESSONS]
    assert numbers == sorted(set(numbers)), "lesson numbers must be unique"


def test_lessons_import_the_installed_package():
    """No lesson puts the checkout on sys.path or reads files outside it: ``googlenet`` and
    ``minidl`` come from ``pip install -e .``, as a learner's copy has them."""
    for path in [*LESSONS, ROOT / "examples" / "_lesson.py"]:
        text = path.read_text()
        assert "sys.path" not in text, path.name
        assert '"shared"' not in text and "../shared" not in text, path.name


# Run a lesson with --help (it stops after its imports) and report OPENBLAS_THREAD_TIMEOUT as it
# was when NumPy was first imported: OpenBLAS reads it only then.
_TIMEOUT_WHEN_NUMPY_LOADS = """
import os, runpy, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
sys.meta_path.insert(0, Watch())
sys.argv = [sys.argv[1], "--help"]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python lesson.py` has it
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print(seen)
"""


@pytest.mark.parametrize("number", ["15", "16"])
def test_training_lessons_ask_openblas_for_a_short_spin_before_numpy_loads(number: str):
    """The lessons that train set OPENBLAS_THREAD_TIMEOUT before NumPy loads (after, it is
    ignored): without it lesson 15 trained 1.4x slower (docs/training.md). A user's own
    setting is kept."""
    (lesson,) = [p for p in LESSONS if p.name.startswith(number)]
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    for preset, expected in ((None, "['4']"), ("1", "['1']")):
        if preset is not None:
            env["OPENBLAS_THREAD_TIMEOUT"] = preset
        proc = run_python(["-c", _TIMEOUT_WHEN_NUMPY_LOADS, str(lesson)], env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == expected


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_quick(lesson: Path, tmp_path: Path, tiny_cifar: Path):
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path), MINIDL_CIFAR10=str(tiny_cifar))
    env["MPLBACKEND"] = "Agg"
    proc = run_python([str(lesson), "--quick"], env)
    assert proc.returncode == 0, (
        f"{lesson.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip(), f"{lesson.name} printed nothing"
    pictures = list(tmp_path.glob("*.png"))
    if "SKIPPED:" in proc.stdout:  # e.g. the GPU lesson on a machine without a GPU
        return
    assert pictures, f"{lesson.name} wrote no PNG to {tmp_path}"
    for picture in pictures:
        assert picture.stat().st_size > 1000, f"{picture.name} looks empty"


CELL_MARKER = re.compile(r"^# %%.*$", re.M)


def cells(path: Path) -> list[tuple[str, str]]:
    """The lesson's ``# %%`` cells as (marker line, source), as Jupytext and VS Code split them."""
    text = path.read_text()
    markers = CELL_MARKER.findall(text)
    bodies = CELL_MARKER.split(text)
    assert not bodies[0].strip(), f"{path.name}: text before the first cell marker"
    return list(zip(markers, bodies[1:]))


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_cells_stand_alone(lesson: Path):
    """Each code cell compiles on its own (no statement split across cells) and each markdown
    cell is text only: comments, or the lesson's docstring as the first cell."""
    found = cells(lesson)
    assert found[0][0] == "# %% [markdown]", f"{lesson.name}: the docstring is not a markdown cell"
    for marker, body in found:
        if "[markdown]" in marker:
            tree = ast.parse(body)
            assert all(
                isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in tree.body
            ), f"{lesson.name}: code in a markdown cell"
        else:
            compile(body, f"{lesson.name} cell", "exec")


RUN_CELLS = textwrap.dedent(
    """
    import linecache, re, sys
    path = sys.argv[1]
    sys.argv = [path, "--quick"]
    sys.path.insert(0, path.rsplit("/", 1)[0])
    text = open(path).read()
    marker = re.compile(r"^# %%.*$", re.M)
    namespace = {"__name__": "__main__"}
    for k, (head, body) in enumerate(zip(marker.findall(text), marker.split(text)[1:])):
        if "[markdown]" in head:
            continue
        name = f"<cell {k}>"
        linecache.cache[name] = (len(body), None, body.splitlines(True), name)  # as IPython does
        exec(compile(body, name, "exec"), namespace)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_cell_by_cell(lesson: Path, tmp_path: Path, tiny_cifar: Path):
    """Cell by cell in one namespace, as a notebook runs it: each cell compiled and run on its
    own, its text registered as IPython does (lessons 2 and 17 read their own functions' source
    with inspect). It needs no Jupyter: test_lessons_notebooks.py runs the same cells in a real
    kernel where the lessons extra is installed."""
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path), MPLBACKEND="Agg")
    env["MINIDL_CIFAR10"] = str(tiny_cifar)
    proc = run_python(["-c", RUN_CELLS, str(lesson)], env)
    assert proc.returncode == 0, (
        f"{lesson.name} failed cell by cell:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )


def test_plotting_helpers_leave_a_chosen_backend_alone(tmp_path: Path):
    """In a notebook pyplot is already on the inline backend: minidl.viz must not switch it to
    Agg (later figures would stop showing). Without a chosen backend it uses Agg (files)."""
    code = textwrap.dedent(
        f"""
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot
        from minidl import viz
        viz.plot_curves({{"epoch": [1, 2], "train_loss": [2.0, 1.5]}}, {str(tmp_path / "c.png")!r})
        matrix = __import__("numpy").eye(2, dtype=int)
        viz.plot_confusion(matrix, ["a", "b"], {str(tmp_path / "m.png")!r})
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "m.png").stat().st_size > 1000


STUB = "    return None  # your code here"
EXP_RIGHT = "    return Value(np.exp(v.data), ((v, np.exp(v.data)),), 'exp')"
EXP_WRONG = "    return Value(np.exp(v.data), ((v, 1.0),), 'exp')"  # the local derivative forgotten

# Each lesson's exercise check, given a learner's right answer and a wrong one: the checks must
# tell them apart, or the exercises teach nothing. (lesson, {stub: answer}, exercises checked)
SUM_TO_RIGHT = """    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    return g.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)"""

LESSON_5_STUBS = [
    (3, "maxpool_backward", "x, g, k, stride"),
    (4, "batchnorm_backward", "x, gamma, g, eps"),
    (5, "lrn_backward", "x, g, size, alpha, beta, k"),
    (6, "avgpool_backward", "g, x_shape, k, stride"),
]

SOLUTIONS = [
    (
        "01_scalar_chain_rule",
        {"my_dydx = None": "my_dydx = 24", "my_w_grad = None": "my_w_grad = 12"},
        {"my_dydx = None": "my_dydx = 12", "my_w_grad = None": "my_w_grad = 6"},
        ["exercise 1", "exercise 2"],
    ),
    ("03_broadcasting", {STUB: SUM_TO_RIGHT}, {STUB: "    return g.sum(axis=0)"}, ["exercise"]),
    (
        "04_gradient_checking",
        {"my_k = None": "my_k = -5"},
        {"my_k = None": "my_k = -12"},
        ["exercise"],
    ),
    (
        "06_train_what_you_built",
        {
            STUB: "    from _solutions import nesterov_step\n\n"
            "    return nesterov_step(p, grad, v, lr, mu, wd)",
            "my_factor = None": "my_factor = 20",
        },
        {
            STUB: "    v = mu * v + grad + wd * p\n    return p - lr * v, v",  # plain momentum
            "my_factor = None": "my_factor = 1",
        },
        ["exercise 1", "exercise 2"],
    ),
    (
        "07_conv_as_matmul",
        {
            "my_cols_shape = None": "my_cols_shape = (2, 3, 3, 5, 5, 3)",
            "my_macs = None": "my_macs = 21600",
        },
        {
            "my_cols_shape = None": "my_cols_shape = (2, 4, 4, 5, 5, 3)",
            "my_macs = None": "my_macs = 0",
        },
        ["exercise 1", "exercise 2"],
    ),
    (
        "08_bottleneck_cost",
        {"my_without = None": "my_without = 112_896_000", "my_with = None": "my_with = 5_268_480"},
        {"my_without = None": "my_without = 1", "my_with = None": "my_with = 1"},
        ["exercise"],
    ),
    (
        "09_inception_module",
        {"my_shape = None": "my_shape = (1, 832, 14, 14)"},
        {"my_shape = None": "my_shape = (1, 528, 14, 14)"},
        ["exercise"],
    ),
    (
        "10_global_average_pooling",
        {"my_fc = None": "my_fc = 40_970", "my_gap = None": "my_gap = 2_570"},
        {"my_fc = None": "my_fc = 40_960", "my_gap = None": "my_gap = 2_560"},
        ["exercise"],
    ),
    (
        "12_auxiliary_classifiers",
        {"my_factor = None": "my_factor = 2"},
        {"my_factor = None": "my_factor = 1"},
        ["exercise"],
    ),
    (
        "15_train_cifar10",
        {"my_steps = None": "my_steps = 390", "my_bytes = None": "my_bytes = (393_216, 1_572_864)"},
        {"my_steps = None": "my_steps = 391", "my_bytes = None": "my_bytes = (393_216, 393_216)"},
        ["exercise 1", "exercise 2"],
    ),
    (
        "16_train_on_gpu",  # runs on the simulated GPU (MINIDL_SIMULATE_CUDA=1 below)
        {"my_bytes = None": "my_bytes = 394_240"},
        {"my_bytes = None": "my_bytes = 1_572_864"},
        ["exercise"],
    ),
    (
        "13_batchnorm_vs_lrn",
        {"my_output = None": "my_output = 9.9850"},
        {"my_output = None": "my_output = 10"},
        ["exercise"],
    ),
    (
        "02_autograd_from_scratch",
        {STUB: EXP_RIGHT, "my_wrong = None": 'my_wrong = {"x", "w", "b"}'},
        {STUB: EXP_WRONG, "my_wrong = None": 'my_wrong = {"w"}'},
        ["exercise 1", "exercise 2"],
    ),
    (
        "05_layer_backwards",
        {STUB: "    return g * y * (1 - y)"},
        {STUB: "    return g * y"},
        ["exercise 2"],
    ),
    (
        "05_layer_backwards",  # write the backward: the worked answers in examples/_solutions.py
        {
            f'    raise NotImplementedError("exercise {n}: your code here")': (
                f"    import _solutions\n\n    return _solutions.{name}({args})"
            )
            for n, name, args in LESSON_5_STUBS
        },
        {
            f'    raise NotImplementedError("exercise {n}: your code here")': (
                "    return np.zeros(x_shape)" if n == 6 else "    return np.zeros_like(x)"
            )
            for n, name, args in LESSON_5_STUBS
        },
        ["exercise 3", "exercise 4", "exercise 5", "exercise 6"],
    ),
    (
        "11_initialisation",
        {"my_std = None": "my_std = (2 / 144) ** 0.5", "my_factor = None": "my_factor = 1.04 / 6"},
        {"my_std = None": "my_std = (1 / 144) ** 0.5", "my_factor = None": "my_factor = 1 / 6"},
        ["exercise 1", "exercise 2"],
    ),
    (
        "14_whole_googlenet",
        {"my_params = None": "my_params = 4 * 348_770", "my_size = None": "my_size = 4"},
        {"my_params = None": "my_params = 2 * 348_770", "my_size = None": "my_size = 5"},
        ["exercise 1", "exercise 2"],
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("stem, right, wrong, exercises", SOLUTIONS, ids=[s[0] for s in SOLUTIONS])
def test_exercise_checks_accept_right_answers_and_refuse_wrong_ones(
    stem, right, wrong, exercises, tmp_path: Path
):
    source = (ROOT / "examples" / f"{stem}.py").read_text()
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path), MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT / "examples")  # the lesson's own _lesson helper
    env["MINIDL_SIMULATE_CUDA"] = "1"  # lesson 16 without a GPU
    env["MINIDL_CIFAR10"] = str(write_tiny_cifar(tmp_path / "data" / "cifar-10-batches-py"))
    for answers, verdict in ((right, "correct"), (wrong, "not yet")):
        text = source
        for stub, answer in answers.items():
            assert stub in text, f"{stem}: the exercise stub {stub!r} moved"
            text = text.replace(stub, answer, 1)
        script = tmp_path / f"{stem}.py"
        script.write_text(text)
        proc = run_python([str(script), "--quick"], env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        for exercise in exercises:
            assert f"{exercise}: {verdict}" in proc.stdout, (exercise, verdict, proc.stdout[-1500:])


def test_too_few_training_steps_are_warned_about_with_the_reason():
    """Lesson 15's warning (``_lesson.too_few_steps``): under half the planned steps in the
    budget says so plainly, with the load average when other programs took the cores."""
    code = (
        "import _lesson\n"
        "print(_lesson.too_few_steps(62, 124, 80.0, load=3.4, cores=2))\n"
        "print(_lesson.too_few_steps(8, 124, 80.0, load=3.4, cores=2))\n"
        "print(_lesson.too_few_steps(8, 124, 80.0, load=1.0, cores=2))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "examples"), MPLBACKEND="Agg")
    proc = run_python(["-c", code], env)
    enough, busy, slow = proc.stdout.strip().splitlines()
    assert enough == "None"
    assert busy.startswith("WARNING: only 8 of the 124 planned training steps ran in the 80 s")
    assert "too few to mean anything" in busy and "load average is 3.4 on 2 cores" in busy
    assert "more slowly than the lesson's defaults assume" in slow and "--budget" in slow


@pytest.mark.slow
def test_lesson_15_warns_when_its_budget_allowed_too_few_steps(tmp_path: Path, tiny_cifar: Path):
    env = dict(os.environ, MINIDL_EXAMPLES_OUTPUT=str(tmp_path), MINIDL_CIFAR10=str(tiny_cifar))
    env["MPLBACKEND"] = "Agg"
    proc = run_python(
        [str(ROOT / "examples" / "15_train_cifar10.py"), "--quick", "--budget", "0"], env
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "WARNING: only 1 of the" in proc.stdout and "too few to mean anything" in proc.stdout
