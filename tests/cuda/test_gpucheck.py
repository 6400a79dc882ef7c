"""``python -m minidl.gpucheck``, the GPU owner's first command, run on the simulated CuPy."""

from __future__ import annotations

import pytest

from minidl import backend, gpucheck


def test_the_smoke_check_passes_on_the_simulation_and_prints_the_step_cost(capsys):
    assert gpucheck.main(["--simulate"]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "all checks passed" in out
    assert "ok   ops: 31 ops" in out
    (cost,) = [line for line in out.splitlines() if line.startswith("info per training step")]
    assert "1 synchronisation(s)" in cost and "kernel launches" in cost


def test_a_wrong_op_on_the_device_fails_the_check(capsys, monkeypatch):
    run_case = gpucheck._run_case

    def wrong_on_the_device(case, device):
        results = run_case(case, device)
        if device == "cuda" and case.op == "relu":
            results[0] = results[0] + 1e-3
        return results

    monkeypatch.setattr(gpucheck, "_run_case", wrong_on_the_device)
    assert gpucheck.main(["--simulate"]) == 1
    out = capsys.readouterr().out
    assert "FAIL ops" in out and "over 1e-08: relu" in out and "1 check(s) FAILED" in out


def test_a_step_far_from_the_cpus_fails_the_check(capsys, monkeypatch):
    monkeypatch.setattr(gpucheck, "check_step", lambda: (0.05, 0.006))
    assert gpucheck.main(["--simulate"]) == 1
    assert "FAIL step" in capsys.readouterr().out


@pytest.mark.skipif(backend.is_gpu_available(), reason="checks the message shown without a GPU")
def test_without_a_gpu_it_says_why_and_fails(capsys, monkeypatch):
    monkeypatch.delenv(backend.SIMULATE_ENV, raising=False)
    assert gpucheck.main([]) == 1
    assert capsys.readouterr().out.startswith("FAIL libraries: ")
