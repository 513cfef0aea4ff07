"""Numba kernels of zotrain: pure functions, arrays in, arrays out."""
