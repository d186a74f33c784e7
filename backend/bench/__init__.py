"""Benchmarks behind `pers bench`: each prints JSON and measures its baseline in the same run."""
