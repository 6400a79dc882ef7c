# %% [markdown]
"""Lesson 1: one scalar's gradient, by hand and by autograd.

What it teaches: the chain rule is all backpropagation is. We take ``y = (x*w + b)^2``, split it
into the three small steps the computer actually runs (multiply, add, square), compute every
derivative by hand, then let minidl's autograd do the same and compare, node by node. Finally we
check one derivative against the slope of the curve, and see that a second ``backward()`` adds to
the gradients (which is why training loops zero them).

Run it: ``python examples/01_scalar_chain_rule.py``. Pictures: ``examples/output/01_*.png``.
"""

# %% [markdown]
# ## Set-up
# Import minidl and the lesson helpers (where pictures go, how they are saved).

# %%
import matplotlib.pyplot as plt
from _exercises import check_cube_derivative, check_two_backwards, report
from _lesson import parse_args, render_graph, save
from matplotlib.patches import Ellipse, FancyBboxPatch

import minidl as md

args = parse_args(__doc__.splitlines()[0])
out = args.output

# %% [markdown]
# ## 1. The forward pass, one step at a time
# `y = (x*w + b)^2` is three operations. Name the in-between values so we can talk about them:
#
#     u = x * w        (Mul)
#     v = u + b        (Add)
#     y = v ** 2       (Pow)
#
# `requires_grad=True` on x, w and b tells minidl we want dy/dx, dy/dw and dy/db. Each operation
# then records itself (its *creator* Function) in a graph as it runs.

# %%
x = md.tensor(1.5, requires_grad=True)
w = md.tensor(2.0, requires_grad=True)
b = md.tensor(-1.0, requires_grad=True)
x.name, w.name, b.name = "x", "w", "b"

u = x * w
v = u + b
y = v**2
u.name, v.name, y.name = "u", "v", "y"

print("Forward pass")
print(f"  x = {x.item()},  w = {w.item()},  b = {b.item()}")
print(f"  u = x * w  = {x.item()} * {w.item()} = {u.item()}")
print(f"  v = u + b  = {u.item()} + {b.item()} = {v.item()}")
print(f"  y = v ** 2 = {v.item()} ** 2 = {y.item()}")
print(f"  y was made by {y.creator.name}, v by {v.creator.name}, u by {u.creator.name}")
print(f"  x is a leaf (made by you, not by an op): x.is_leaf = {x.is_leaf}")

# %% [markdown]
# ## 2. The backward pass by hand
# The chain rule multiplies local derivatives along the path from y back to each input. Start
# with dy/dy = 1 and walk backwards; each step multiplies by the derivative of one small op:
#
#     dy/dv = 2v                         (Pow: d(v^2)/dv)
#     dy/du = dy/dv * dv/du = dy/dv * 1  (Add passes the gradient through unchanged)
#     dy/db = dy/dv * dv/db = dy/dv * 1
#     dy/dx = dy/du * du/dx = dy/du * w  (Mul: each input gets the *other* input)
#     dy/dw = dy/du * du/dw = dy/du * x

# %%
xv, wv, bv = x.item(), w.item(), b.item()
vv = xv * wv + bv
hand = {}
hand["v"] = 2 * vv
hand["u"] = hand["v"] * 1
hand["b"] = hand["v"] * 1
hand["x"] = hand["u"] * wv
hand["w"] = hand["u"] * xv
print("Backward pass by hand")
print(f"  dy/dv = 2 * v          = 2 * {vv} = {hand['v']}")
print(f"  dy/du = dy/dv * 1      = {hand['u']}")
print(f"  dy/db = dy/dv * 1      = {hand['b']}")
print(f"  dy/dx = dy/du * w      = {hand['u']} * {wv} = {hand['x']}")
print(f"  dy/dw = dy/du * x      = {hand['u']} * {xv} = {hand['w']}")

# %% [markdown]
# ## 3. The same by autograd
# `y.backward()` does exactly the walk above. It visits the recorded Functions youngest first
# (Pow, then Add, then Mul), so a tensor's gradient is complete before it is passed further down.
# Gradients of in-between tensors (u, v) are normally thrown away once used; `retain_grad()`
# keeps them so we can print them (on y itself it keeps the starting gradient dy/dy = 1).
#
# Below we first list the Functions in the order backward will visit them, with the local rule
# each one applies.

# %%
for t in (x, w, b, u, v, y):
    t.zero_grad()  # gradients accumulate (section 6): a second run of this cell starts clean too
for t in (u, v, y):
    t.retain_grad()

rules = {
    "Pow": "grad_in = grad_out * 2 * input",
    "Add": "grad_first = grad_out, grad_second = grad_out",
    "Mul": "grad_first = grad_out * second, grad_second = grad_out * first",
}
order, fn = [], y.creator
while fn is not None:  # this graph is a chain: follow the input that was made by an op
    order.append(fn)
    fn = next((t.creator for t in fn.inputs if t.creator is not None), None)
print("Functions in the order backward visits them (youngest generation first):")
for fn in order:
    ins = ", ".join(f"{t.name}={t.item():g}" for t in fn.inputs)
    print(f"  generation {fn.generation}: {fn.name:<4} inputs ({ins:<15}) rule: {rules[fn.name]}")

y.backward()

print("\nGradients from autograd vs by hand")
print(f"  {'tensor':<8}{'value':>8}{'autograd dy/d.':>16}{'by hand':>10}")
for t in (v, u, b, x, w):
    print(f"  {t.name:<8}{t.item():>8g}{t.grad.item():>16g}{hand[t.name]:>10g}")
    assert abs(t.grad.item() - hand[t.name]) < 1e-6
print("  all equal.")

# %% [markdown]
# ## 4. The graph, drawn
# Each box is a tensor (value on top, its gradient below in red), each orange ellipse the Function
# that made the next box. Forward runs left to right; backward right to left.
# With Graphviz installed the library also draws it as SVG (`minidl.viz.render`); the DOT text
# is always written next to it.

# %%
render_graph(y, out / "01_graph.svg", verbose=True, fallback=False)  # drawn by hand below

fig, ax = plt.subplots(figsize=(10, 3.6))
ax.set_xlim(-0.8, 10.0)
ax.set_ylim(-0.6, 3.0)
ax.axis("off")
tensor_pos = {"x": (0, 2.3), "w": (0, 1.1), "u": (3.0, 1.7), "b": (3.0, 0.2), "v": (6.0, 1.0)}
tensor_pos["y"] = (9.0, 1.0)
fn_pos = {"Mul": (1.5, 1.7), "Add": (4.5, 1.0), "Pow": (7.5, 1.0)}
for t in (x, w, b, u, v, y):
    cx, cy = tensor_pos[t.name]
    leaf = t.is_leaf
    ax.add_patch(
        FancyBboxPatch(
            (cx - 0.55, cy - 0.38),
            1.1,
            0.76,
            boxstyle="round,pad=0.05",
            fc="#cfe8ff" if leaf else "white",
            ec="black",
        )
    )
    ax.text(cx, cy + 0.12, f"{t.name} = {t.item():g}", ha="center", va="center", fontsize=11)
    ax.text(cx, cy - 0.18, f"grad {t.grad.item():g}", ha="center", va="center", color="#c00000")
for fn in order:
    fx, fy = fn_pos[fn.name]
    ax.add_patch(Ellipse((fx, fy), 1.0, 0.55, fc="#ffb347", ec="black"))
    ax.text(fx, fy, fn.name, ha="center", va="center", fontsize=11)
    for t in fn.inputs:
        tx, ty = tensor_pos[t.name]
        ax.annotate("", (fx - 0.5, fy), (tx + 0.6, ty), arrowprops=dict(arrowstyle="->"))
    ox, oy = tensor_pos[fn.outputs[0]().name]
    ax.annotate("", (ox - 0.6, oy), (fx + 0.5, fy), arrowprops=dict(arrowstyle="->"))
ax.text(-0.7, -0.45, "blue: leaves you made (requires_grad=True)    red: dy/d(that tensor)")
ax.set_title("y = (x*w + b)^2: values flow right (forward), gradients flow left (backward)")
save(fig, out / "01_graph.png")

# %% [markdown]
# ## 5. A gradient is a slope
# dy/dw = 6 says: nudge w a little and y moves about 6 times as much. Plot y as a function of w
# (x and b fixed) and draw the line with slope dy/dw through the current point: it touches the
# curve. A finite difference (y(w+h) - y(w-h)) / 2h gives the same number.


# %%
def y_of_w(wval: float) -> float:
    return (xv * wval + bv) ** 2


h = 1e-4
numeric = (y_of_w(wv + h) - y_of_w(wv - h)) / (2 * h)
print(
    f"dy/dw from autograd {w.grad.item():g}, from (y(w+h) - y(w-h)) / 2h with h={h}: {numeric:.6f}"
)

ws = [wv - 2.5 + 5 * i / 200 for i in range(201)]
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot(ws, [y_of_w(s) for s in ws], label="y = (x*w + b)^2  (x=1.5, b=-1)")
ax.plot(
    ws[40:161],
    [y.item() + w.grad.item() * (s - wv) for s in ws[40:161]],
    "--",
    color="#c00000",
    label=f"tangent, slope dy/dw = {w.grad.item():g}",
)
ax.plot([wv], [y.item()], "o", color="black", label=f"current point w={wv:g}, y={y.item():g}")
ax.set(xlabel="w", ylabel="y", title="The gradient dy/dw is the slope of y(w) at the current w")
ax.grid(alpha=0.3)
ax.legend()
save(fig, out / "01_slope.png")

# %% [markdown]
# ## 6. Gradients accumulate
# Calling backward again on a new graph *adds* to the leaves' `.grad` (as in PyTorch). That is
# what lets a tensor used twice collect both contributions, and it is why a training loop clears
# the gradients before every step. `zero_grad()` clears a gradient to `None` rather than to an
# array of zeros (PyTorch's default too, `set_to_none=True`): "no gradient yet", so the next
# backward stores its gradient instead of adding it to zeros. Same result, one pass less.

# %%
before = x.grad.item()
((x * w + b) ** 2).backward()
print(f"x.grad after one backward: {before:g}; after a second one: {x.grad.item():g} (added up)")
x.zero_grad()
print(f"after x.zero_grad(): x.grad = {x.grad} (cleared)")
((x * w + b) ** 2).backward()
print(f"after one more backward: x.grad = {x.grad.item():g}, the single backward's value again")
assert x.grad.item() == before

# %% [markdown]
# ## Exercises
# 1. Change the square to a cube: y = (x*w + b)^3 at the same x = 1.5, w = 2, b = -1. Predict
#    dy/dx with the chain rule (outer derivative times inner), set `my_dydx`, run the check.
# 2. Without `zero_grad()`, call backward of y = (x*w + b)^2 twice on fresh graphs. Predict
#    w.grad afterwards, set `my_w_grad`, and check.

# %%
my_dydx = None  # exercise 1: a number
my_w_grad = None  # exercise 2: a number


report("exercise 1", check_cube_derivative(my_dydx))
report("exercise 2", check_two_backwards(my_w_grad))
