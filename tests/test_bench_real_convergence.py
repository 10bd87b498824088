"""The real-network convergence benchmark's verdict (its runs take minutes: they are the benchmark's, not a test's)."""

import importlib
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports bench_proof as a sibling script
    return importlib.import_module("bench_real_convergence")


def figures(frames: float, correlation: float, jitter: float, steps: int = 100) -> dict:
    return {"stage_seconds": {"start_scoring": 10.0, "start_rehearsal": 30.0, "frames": frames},
            "stage_cpu_seconds": {"start_scoring": 9.0, "start_rehearsal": 28.0, "frames": frames / 2},
            "steps": steps, "correlation": correlation, "output_jitter": jitter}


def test_a_fast_run_meets_the_targets_at_half_the_time_and_the_same_correlation_and_jitter(bench):
    summary = bench.compare(figures(400.0, 0.80, 0.02, 1660), figures(200.0, 0.77, 0.02, 685))
    assert summary["real_speedup"] == pytest.approx(2.0)
    assert summary["real_cpu_speedup"] == pytest.approx(2.0)
    assert summary["real_step_ratio"] == pytest.approx(1660 / 685)
    assert (summary["real_corr_reference"], summary["real_corr_fast"]) == (0.80, 0.77)
    assert summary["misses"] == []


@pytest.mark.parametrize(("fast", "missed"), [
    (figures(201.0, 0.80, 0.02), ["speed"]),
    (figures(100.0, 0.76, 0.02), ["correlation"]),
    (figures(100.0, 0.90, 0.0201), ["jitter"]),
    (figures(300.0, 0.50, 0.03), ["speed", "correlation", "jitter"]),
])
def test_each_missed_target_is_named(bench, fast, missed):
    assert bench.compare(figures(400.0, 0.80, 0.02), fast)["misses"] == missed


def test_the_start_face_cost_is_scoring_plus_rehearsal(bench):
    assert bench.start_seconds(figures(400.0, 0.8, 0.02)) == 40.0
    assert bench.start_seconds(figures(400.0, 0.8, 0.02), "stage_cpu_seconds") == 37.0
    assert math.isnan(bench.start_seconds({"stage_seconds": {"frames": 1.0}}))  # no start face chosen
