"""Benchmarks of runspace against the tools users would pick instead (tsp, nq, RQ, GNU timeout).

Run from the repository root: `python -m bench` (full, < 10 min) or `python -m bench --quick` (< 60 s).
"""
