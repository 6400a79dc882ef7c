# %% [markdown]
"""Lesson 2: autograd from scratch, in fifty lines, then the same job in minidl.

What it teaches: lesson 1 let minidl walk the graph. Here we write the walker ourselves: a scalar
``Value`` that remembers which values it was made from and the local derivative towards each,
a topological order so that a node's gradient is complete before it is passed on, and ``+=``
so that a value used twice collects both contributions. We run one expression through our
engine, through minidl and through central differences and assert that all three agree; we
break the order on purpose and watch the answer go wrong; and we line up each job of our engine
with the lines of ``minidl/tensor.py`` and ``minidl/function.py`` that do it for tensors.

Run it: ``python examples/02_autograd_from_scratch.py``. Picture: ``examples/output/02_*.png``.
"""

# %% [markdown]
# ## Set-up

# %%
import inspect
import math
from collections import deque

import matplotlib.pyplot as plt
import numpy as np
from _exercises import check_overwrite_prediction, check_value_exp, report
from _lesson import parse_args, save

import minidl as md
import minidl.functional as F
from minidl import function as md_function
from minidl.ops import arithmetic as md_arithmetic

args = parse_args(__doc__.splitlines()[0])
md_tensor = inspect.getmodule(md.Tensor)  # minidl/tensor.py (md.tensor is the function)
out = args.output

# %% [markdown]
# ## 1. The engine
# A `Value` holds a number (`data`), the gradient it will receive (`grad`) and its `edges`: one
# pair (parent, d self / d parent) per input it was computed from. That local derivative is all
# an op has to know; the chain rule does the rest:
#
#     d out / d parent  +=  (d self / d parent) * (d out / d self)
#
# summed over every edge that leaves the parent (`+=`: a value used twice gets two terms).
# `backward` first lists the graph in topological order (every value after the values it was
# made from), then walks that list backwards, so each value's gradient is final before it is
# handed on.


# %%
class Value:
    """A scalar that records how it was computed (a toy, for this lesson only)."""

    def __init__(self, data, edges=(), op=""):
        self.data = float(data)
        self.grad = 0.0
        self.edges = edges  # ((parent, d self / d parent), ...)
        self.op = op  # for printing and drawing

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, ((self, 1.0), (other, 1.0)), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, ((self, other.data), (other, self.data)), "*")

    def __pow__(self, c):  # c: a plain number
        return Value(self.data**c, ((self, c * self.data ** (c - 1)),), f"**{c:g}")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, ((self, 1 - t * t),), "tanh")

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-other)

    __radd__ = __add__
    __rmul__ = __mul__

    def topological_order(self):
        order, seen, stack = [], set(), [(self, False)]
        while stack:  # depth first, without recursion (deep graphs would overflow it)
            v, parents_done = stack.pop()
            if parents_done:
                order.append(v)  # after all of its parents
            elif id(v) not in seen:
                seen.add(id(v))
                stack.append((v, True))
                stack.extend((parent, False) for parent, _ in v.edges)
        return order

    def backward(self):
        self.grad = 1.0  # d self / d self
        for v in reversed(self.topological_order()):
            for parent, local in v.edges:
                parent.grad += local * v.grad


# %% [markdown]
# ## 2. One expression, with values used more than once
# A tiny neuron with a twist: `h` is used three times and `w` twice.
#
#     h = x * w + b
#     y = tanh(h) * w + h * h
#
# Our engine first.

# %%
xv, wv, bv = 1.5, -0.8, 0.4
x, w, b = Value(xv), Value(wv), Value(bv)
h = x * w + b
y = h.tanh() * w + h * h
y.backward()
ours = {"x": x.grad, "w": w.grad, "b": b.grad}
print(f"h = {h.data:.6f}, y = {y.data:.6f}")
print("our engine:  " + "  ".join(f"dy/d{k} = {v:+.10f}" for k, v in ours.items()))

# %% [markdown]
# The same expression in minidl, in float64 (lesson 4 explains why float64 for comparisons),
# and a third opinion that needs no calculus at all: central differences,
# (y(p + eps) - y(p - eps)) / (2 eps) for each input p.


# %%
def y_of(x_, w_, b_):
    h_ = x_ * w_ + b_
    return math.tanh(h_) * w_ + h_ * h_


tx, tw, tb = (md.tensor(np.float64(v), requires_grad=True) for v in (xv, wv, bv))
th = tx * tw + tb
ty = F.tanh(th) * tw + th * th
ty.backward()
theirs = {"x": tx.grad.item(), "w": tw.grad.item(), "b": tb.grad.item()}
eps = 1e-6
point = {"x": xv, "w": wv, "b": bv}
numeric = {}
for k in point:
    up, down = dict(point), dict(point)
    up[k] += eps
    down[k] -= eps
    numeric[k] = (y_of(up["x"], up["w"], up["b"]) - y_of(down["x"], down["w"], down["b"])) / (
        2 * eps
    )
print(f"{'':>4}{'our engine':>18}{'minidl':>18}{'central difference':>22}")
for k in ours:
    print(f"dy/d{k}{ours[k]:>17.10f}{theirs[k]:>18.10f}{numeric[k]:>22.10f}")
    if abs(ours[k] - theirs[k]) > 1e-12 or abs(ours[k] - numeric[k]) > 1e-7:
        raise AssertionError(
            f"dy/d{k}: our engine's {ours[k]:.10f} disagrees with minidl's and with the central "
            "difference: does Value.backward still add up (+=) the gradients of a value used "
            "more than once?"
        )
assert abs(y.data - ty.item()) < 1e-12
print("all three agree (engine = minidl to 1e-12, = central differences to 1e-7)")

# %% [markdown]
# ## 3. Accumulation: a value used twice
# `w` reaches `y` along two paths: through `h` (inside tanh and the square) and directly as the
# multiplier of tanh(h). Its gradient is the sum of both paths:
#
#     dy/dw = dy/dh * dh/dw + tanh(h)      with  dy/dh = (1 - tanh(h)^2) * w + 2h,  dh/dw = x
#
# The engine gets that sum from `+=` alone; no op knows that `w` is used elsewhere.

# %%
th_ = math.tanh(h.data)
dy_dh = (1 - th_**2) * wv + 2 * h.data
by_paths = {"through h": dy_dh * xv, "directly": th_}
print(
    f"dy/dw = {by_paths['through h']:+.6f} (through h) + {by_paths['directly']:+.6f} (directly)"
    f" = {sum(by_paths.values()):+.6f}; the engine says {w.grad:+.6f}"
)
assert abs(sum(by_paths.values()) - w.grad) < 1e-12
print(f"h.grad = {h.grad:+.6f} = dy/dh = {dy_dh:+.6f}: three uses, three terms, one sum")
assert abs(h.grad - dy_dh) < 1e-12

# %% [markdown]
# ## 4. Why the order matters
# Walk the same graph breadth-first from `y` instead, visiting each value once: a value can be
# visited (and its gradient handed on) before all of its users have added their share. Here
# `u` reaches `z` directly and through a longer path; breadth-first reaches `u` by the short path
# first and passes on a gradient that is still missing the long path's share.


# %%
def backward_breadth_first(out_value):
    """The WRONG walk: breadth-first from the output, each value visited once."""
    out_value.grad = 1.0
    queue, seen = deque([out_value]), {id(out_value)}
    while queue:
        v = queue.popleft()
        for parent, local in v.edges:
            parent.grad += local * v.grad
            if id(parent) not in seen:
                seen.add(id(parent))
                queue.append(parent)


def build(t):
    u = t * 2  # z = u + (u*3)*4 = 2t + 24t: dz/dt = 26
    return u + (u * 3) * 4


leaf_wrong, leaf_right = Value(1.0), Value(1.0)
backward_breadth_first(build(leaf_wrong))
z = build(leaf_right)
z.backward()
print("z = u + (u*3)*4 with u = 2t: dz/dt = 2 + 24 = 26")
print(f"  topological order: {leaf_right.grad:g}")
print(f"  breadth-first, each value visited once: {leaf_wrong.grad:g}  (the long path is lost)")
assert leaf_right.grad == 26 and leaf_wrong.grad != 26

# %% [markdown]
# ## 5. The graph, drawn
# Every value as a box (its data, and in red the gradient backward left in it), every edge
# labelled with its local derivative. A value's gradient is the sum, over the edges leaving it,
# of (edge label) x (gradient of the box the edge enters). Check it on `h`.


# %%
def draw(root, places, path, title):
    """Boxes at ``places`` ({id(value): (name, x, y)}); an edge per (parent, local derivative),
    bent apart when a value feeds the same op twice (h * h)."""
    fig, ax = plt.subplots(figsize=(13, 5))
    for v in root.topological_order():
        name, x1, y1 = places[id(v)]
        for k, (parent, local) in enumerate(v.edges):
            _, x0, y0 = places[id(parent)]
            bend = 0.25 * k if v.edges[0][0] is v.edges[-1][0] else 0.0  # the same parent twice
            ax.annotate(
                "",
                (x1, y1),
                (x0, y0),
                arrowprops=dict(
                    arrowstyle="->", shrinkA=24, shrinkB=24, connectionstyle=f"arc3,rad={bend}"
                ),
            )
            mx, my = (x0 + x1) / 2 + bend * (y1 - y0) / 2, (y0 + y1) / 2 - bend * (x1 - x0) / 2
            ax.text(mx, my + 0.1, f"{local:.3g}", color="#1f4e9f", fontsize=9, ha="center")
        ax.text(
            x1,
            y1,
            f"{name}\n{v.data:.3g}",
            ha="center",
            va="center",
            bbox=dict(boxstyle="round", fc="white" if v.edges else "#cfe8ff", ec="black"),
        )
        ax.text(  # on white, so an edge passing under it does not strike it through
            x1,
            y1 - 0.42,
            f"grad {v.grad:.3g}",
            ha="center",
            color="#c00000",
            fontsize=10,
            bbox=dict(fc="white", ec="none", pad=0.5),
        )
    ax.set_xlim(-0.8, 10.8)
    ax.set_ylim(-2.2, 2.0)
    ax.axis("off")
    ax.set_title(title)
    save(fig, path)


tw_node, hh_node = (parent for parent, _ in y.edges)  # tanh(h) * w and h * h
tanh_node, xw_node = tw_node.edges[0][0], h.edges[0][0]
places = {
    id(x): ("x", 0, 0.9),
    id(w): ("w", 0, -1.6),
    id(xw_node): ("*", 2, 0.2),
    id(b): ("b", 2, 1.5),
    id(h): ("h (+)", 4, 0.6),
    id(hh_node): ("*", 6.5, 1.3),
    id(tanh_node): ("tanh", 6, -0.3),
    id(tw_node): ("*", 8, -0.7),
    id(y): ("y (+)", 10, 0.4),
}
draw(
    y,
    places,
    out / "02_value_graph.png",
    "y = tanh(h)*w + h*h: blue numbers are local derivatives, red ones gradients dy/d(box)",
)
users = [(v, local) for v in y.topological_order() for p, local in v.edges if p is h]
print("h.grad = " + " + ".join(f"{local:.4g} * {v.grad:.4g}" for v, local in users), end="")
print(f" = {sum(local * v.grad for v, local in users):.6f}")
assert abs(sum(local * v.grad for v, local in users) - h.grad) < 1e-12

# %% [markdown]
# ## 6. The same jobs in minidl
# minidl does exactly these jobs, for arrays instead of scalars. One difference matters: an op on
# arrays cannot store its local derivative (for a 1000-element input and output that would be a
# 1000 x 1000 Jacobian), so each `Function` stores what it needs and its `backward(gy)` returns
# the product (local derivative)^T x gy directly. The lines below are read from the installed
# library, so they are the real ones.


# %%
def locate(obj, needle):
    """'file:line  code' of the first line of obj's source containing needle."""
    lines, first = inspect.getsourcelines(obj)
    file = inspect.getsourcefile(obj).replace("\\", "/").split("/")[-1]
    if inspect.getmodule(obj).__name__.startswith("minidl."):
        file = inspect.getmodule(obj).__name__.replace(".", "/") + ".py"
    for k, line in enumerate(lines):
        if needle in line:
            return f"{file}:{first + k}", line.strip()
    return f"{file}:{first}", f"(see {obj.__qualname__})"


V, Fn, Mul, run = Value, md_function.Function, md_arithmetic.Mul, md_tensor._run_backward
jobs = [  # (job, our function, a piece of our line, minidl's function, a piece of its line)
    ("remember the inputs", V.__mul__, "((self, other.data)", Fn.__call__, "self.inputs ="),
    ("the local rule of *", V.__mul__, "((self, other.data)", Mul.backward, "gy * self.b"),
    ("order: parents first", V.topological_order, "order.append(v)", Fn.__call__, "generation ="),
    ("walk youngest first", V.backward, "reversed(", run, "heapq.heappop(heap)"),
    ("seed d out/d out = 1", V.backward, "self.grad = 1.0", md.Tensor.backward, "ones_like"),
    ("local x upstream", V.backward, "local * v.grad", run, "fn.backward(*gys)"),
    ("+=: used twice", V.backward, "parent.grad +=", run, "grads[key] + gx"),
    ("leaves keep adding", V.backward, "parent.grad +=", md_tensor._accumulate_leaf, "+= gx"),
]
for job, ours_fn, our_needle, lib_fn, lib_needle in jobs:
    here, our_line = locate(ours_fn, our_needle)
    where, lib_line = locate(lib_fn, lib_needle)
    print(f"{job}")
    print(f"    {here + ':':<36} {our_line}")
    print(f"    {where + ':':<36} {lib_line}")
print(
    "minidl adds what a real library needs: arrays and broadcasting (lesson 3), no_grad() to\n"
    "record nothing, freeing intermediate gradients once used (retain_grad keeps one), and\n"
    "generation numbers instead of a sort, so the order is known as the graph is built."
)

# %% [markdown]
# ## Exercises
# 1. Give `Value` an `exp()`: fill in `value_exp` below (the local derivative of e^v is e^v), then
#    run the check, which compares your gradient of y = exp(x*w) * x with minidl's.
# 2. If `Value.backward` wrote `parent.grad = local * v.grad` instead of `+=`, which of dy/dx,
#    dy/dw, dy/db in section 2 would go wrong? Set `my_wrong` to the set of their names, e.g.
#    {"x"} (or set() for none), and check: the check runs section 2 on an engine with `=`. Then
#    see it for yourself: make the change, re-run the cells from section 1 (section 2 stops with
#    a message), and put `+=` back.


# %%
def value_exp(v):
    """Exercise 1: return Value(e^v.data, ((v, LOCAL),), "exp") with the right LOCAL."""
    return None  # your code here


my_wrong = None  # exercise 2: a set of names among "x", "w", "b"

report("exercise 1", check_value_exp(value_exp, Value))
report("exercise 2", check_overwrite_prediction(my_wrong, Value))
