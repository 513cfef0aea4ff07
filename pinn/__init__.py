"""Physics-informed networks without autodiff (installed as ``zotrain.pinn``).

* ``sparse_grid``: Smolyak Gauss-Hermite rules for expectations over N(0, I).
* ``derivatives``: u, grad u, Laplacian u and u_t of a Gaussian-smoothed
  function from function values (Stein's identity), on sparse-grid nodes or
  Monte-Carlo samples.
* ``problems``: PDEs declared as data (HJB-20d, Black-Scholes, Poisson 2-D,
  heat 100-D) with exact solutions.
* ``loss``: the mean squared residual of Q parameter sets in one batched
  forward, and the smoothed predictor.

Training loops, the ``zotrain pinn`` command and its benchmarks are not built yet.
"""
