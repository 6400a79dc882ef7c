"""Where does the time go? A per-op profile of forward and backward.

    with profile() as prof:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    print(prof.table())

Every Function call and every Function.backward inside the block is timed and summed per op name
(Conv2d forward, Conv2d backward, ...). On the GPU the device is synchronised around each op so
the times are real (which makes the profiled step itself slower).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from . import backend, function


class Profile:
    """Accumulated seconds and call counts per (op, phase)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)

    def add(self, op: str, phase: str, seconds: float) -> None:
        self.seconds[op, phase] += seconds
        self.calls[op, phase] += 1

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def table(self, top: int | None = None) -> str:
        """Ops sorted by forward+backward time, with each phase's share of the profiled total."""
        ops: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
        for (op, phase), s in self.seconds.items():
            ops[op][phase] += s
        rows = sorted(ops.items(), key=lambda kv: -(kv[1]["forward"] + kv[1]["backward"]))
        total = self.total or 1.0
        lines = [
            f"{'op':<24}{'calls':>7}{'forward ms':>12}{'backward ms':>13}"
            f"{'total ms':>10}{'share':>8}",
            "-" * 74,
        ]
        for op, t in rows[:top]:
            both = t["forward"] + t["backward"]
            calls = self.calls[op, "forward"]
            lines.append(
                f"{op:<24}{calls:>7}{1e3 * t['forward']:>12.1f}{1e3 * t['backward']:>13.1f}"
                f"{1e3 * both:>10.1f}{100 * both / total:>7.1f}%"
            )
        lines.append(f"{'all ops':<24}{'':>7}{'':>12}{'':>13}{1e3 * self.total:>10.1f}{100:>7.1f}%")
        return "\n".join(lines)


class _Timer:
    """The hook ``function`` calls around forward and backward while a profile is active."""

    def __init__(self, prof: Profile, sync: Any) -> None:
        self.prof, self.sync = prof, sync

    @contextlib.contextmanager
    def __call__(self, op: str, phase: str) -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        yield
        self.sync()
        self.prof.add(op, phase, time.perf_counter() - start)


@contextlib.contextmanager
def profile() -> Iterator[Profile]:
    """Time every op run inside the block; yields the Profile that collects the times."""
    prof = Profile()
    previous = function.op_timer
    function.op_timer = _Timer(prof, backend.synchronize)
    try:
        yield prof
    finally:
        function.op_timer = previous
