"""The random-within-window report: each window's AUBC paired per seed with top-first."""

import pytest

from benchmarks import window


def test_each_window_is_paired_with_top_first_per_strategy():
    top = {"margin": {0: 0.80, 1: 0.82}, "uniform": {0: 0.79, 1: 0.79}}
    by_window = {
        10: {"margin": {0: 0.79, 1: 0.80}, "uniform": {0: 0.79, 1: 0.80}},
        100: {"margin": {0: 0.76, 1: 0.77}, "uniform": {0: 0.78, 1: 0.78}},
    }
    report = window.compare("toy", top, by_window)
    assert report["windows"] == [10, 100]
    margin = report["strategies"]["margin"]
    assert margin["top"] == pytest.approx(0.81)
    assert margin["window_minus_top"]["10"]["mean"] == pytest.approx(-0.015)
    assert margin["window_minus_top"]["100"]["mean"] == pytest.approx(-0.045)
    assert report["strategies"]["uniform"]["window_minus_top"]["10"]["wins"] == 1
    text = window.markdown([report])
    assert "| toy | margin | 0.8100 | -0.0150" in text and "W=100" in text
