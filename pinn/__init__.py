"""Physics-informed networks without autodiff (installed as ``zotrain.pinn``).

* ``sparse_grid``: Smolyak Gauss-Hermite rules and a fully symmetric degree-5
  rule for expectations over N(0, I).
* ``derivatives``: u, grad u, Laplacian u and u_t of a Gaussian-smoothed
  function from function values (Stein's identity), on those rules or
  Monte-Carlo samples.
* ``problem``: a PDE declared as data (``Problem``); ``problems``: the built-in ones
  (HJB-20d, Black-Scholes, Poisson 2-D, heat, Black-Scholes-Barenblatt and HJB in
  100-D) with exact solutions, hard constraints or boundary data, and the training
  options that suit them (``recipe``); ``suite``: seeded PDE instances nobody tuned for.
* ``inputs``: what the network sees of a point (box coordinates, with their squared
  distance from the box's centre, or with each coordinate's square).
* ``loss``: the mean squared residual of Q parameter sets in one batched forward,
  and the smoothed predictor; ``constraint``: a hard constraint on the smoothed network
  (``u = a + c N_sigma``, the product rule's fields);
  ``solvers``: the head solve, body Jacobian, Levenberg-Marquardt step and local rule.
* ``bodies``: how the body is trained (``RGE``, ``Local``, ``GaussNewton``, ``Frozen``);
  ``config``: ``PinnConfig``; ``task``: the PINN as a task on the engine.

``zotrain.pinn.train``: ``train_pinn(problem, config, out_dir)`` trains any ``Problem``
(``zotrain pinn``); ``load_run(problem, run_dir)`` reloads a run.
"""

from .problem import Problem, ProblemError
from .train import PinnConfig, load_run, train_pinn

__all__ = ["Problem", "ProblemError", "PinnConfig", "train_pinn", "load_run"]
