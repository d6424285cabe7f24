"""Benchmarks: offline data sets and the active-learning simulation harness."""
