"""Physics-informed networks without autodiff (sparse-grid Stein derivatives).

Planned: sparse grids, smoothed-derivative estimators and PDE problems.
"""
