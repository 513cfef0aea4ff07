"""The PINN's solvers: free functions over ``(loss, params, points)`` (a ``PinnLoss``).

* ``head_jacobian``: the exact Jacobian of the residuals in the last (Dense) layer, from
  the features entering it at the shifted inputs (the output is affine in the head, the
  Stein forms linear, the hard constraint affine in the smoothed network's fields; the
  residual's own partials by complex step).  ``head_losses`` and ``solve_head`` (one ridge-regularised
  Gauss-Newton step, damped when the residual is not affine in its fields) build on it.
* ``hidden_layer_gradient``: the same exact sensitivity one activation further down,
  turned into the last hidden layer's update by its own input (the local rule).
* ``body_jacobian`` and ``lm_step``: the per-point Jacobian of that layer and the head,
  and a Levenberg-Marquardt step on it.

No derivative of the network is taken: every function runs forward passes only, counted
in ``loss.account``.
"""

import math

import numpy as np

from zotrain.zo.local_rule import LayerGradient, activation_slope

from .derivatives import check_points


def head_inputs(loss, params, x, chunk, boundary=False):
    """Per chunk of the points ``x``: ``(points, F, constraint)`` with ``F`` ``(B, M, P)``
    the head's inputs at the chunk's shifted points (the last hidden features and a 1
    for the bias; one forward) and ``loss.constraint_at`` the points."""
    P = loss.head_slice().stop - loss.head_slice().start
    chunk = loss.chunk_points(chunk, boundary)
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk]
        y = loss.shifted(xc, boundary)
        B, M, _ = y.shape
        H = loss.network.features(params, loss.network_inputs(y))
        loss.count(y)
        F = np.ones((B * M, P))
        F[:, :H.shape[1]] = H
        yield xc, F.reshape(B, M, P), loss.constraint_at(xc, boundary)


def head_jacobian(loss, params, x, chunk=16, boundary=False):
    """``(r, J)``: residuals ``(B,)`` of ``params`` at ``x`` and their exact Jacobian
    ``(B, P)`` in the head's P parameters (weight then bias), from one forward.
    With ``boundary``, the boundary errors ``u_sigma(x) - g(x)`` instead."""
    x = check_points(x, loss.problem.dim)
    theta = np.asarray(params[loss.head_slice()], np.float64)
    rs, Js = [], []
    for xc, F, cx in head_inputs(loss, params, x, chunk, boundary):
        r, dr = residuals_and_partials(loss, xc, F @ theta, boundary, cx)
        rs.append(r)
        Js.append(np.matmul(dr[:, None, :], F)[:, 0])  # d r_b / d head
    return np.concatenate(rs), np.concatenate(Js)


def head_losses(loss, params, heads, x, xb=None, chunk=16):
    """The loss at ``x`` (and ``xb``) of ``params`` with each of the ``heads`` ``(K, P)``
    in place of its head, from one forward over the points (the head is linear)."""
    heads = np.asarray(heads, np.float64)
    out = np.zeros(len(heads))
    parts = [(check_points(x, loss.problem.dim), False)] if len(x) else []
    if xb is not None and loss.problem.boundary is not None:
        parts.append((check_points(xb, loss.problem.dim), True))
    for pts, boundary in parts:
        for xc, F, cx in head_inputs(loss, params, pts, chunk, boundary):
            V = F @ heads.T  # (B, M, K)
            for k in range(len(heads)):
                out[k] += np.sum(loss.residuals(xc, V[..., k], boundary, cx) ** 2) / len(pts)
    return out


def residuals_and_partials(loss, x, values, boundary, constraint=None):
    """Residuals ``(B,)`` (or boundary errors) of the network's values ``(B, M)`` at the
    shifted inputs and their partials in those values ``(B, M)``: the residual's own
    partials in its fields by complex step (exact when it is analytic, every field's
    step in one call of the residual), through the hard constraint's product rule
    (``constraint``: ``loss.constraint_at(x, boundary)``), and the Stein rows."""
    active = loss.constraint.active
    if constraint is None and active:
        constraint = loss.constraint_at(x, boundary)
    if boundary:
        du = loss.root_weight * loss.boundary_u
        partials = constraint[1][:, None] * du if active else np.broadcast_to(du, values.shape)
        return loss.residuals(x, values, True, constraint), partials
    fields = loss.fields(x, values, constraint)
    B, n = fields.shape
    stepped = fields[None] + 1e-30j * np.eye(n)[:, None, :]  # (n, B, n)
    dr = loss.residual(np.tile(x, (n, 1)), stepped.reshape(n * B, n)).imag.reshape(n, B).T \
        / 1e-30
    if active:
        dr = loss.constraint.adjoint(constraint[1], dr)
    return loss.residual(x, fields), dr @ loss.op


def layer_sensitivities(loss, params, x, xb, mu, chunk):
    """Per chunk of the points ``x`` (then of the boundary points ``xb``, if the problem
    has boundary data): ``(n, r, X, D, H, g)`` with ``n`` the part's number of points,
    ``r`` ``(B,)`` the residuals (or boundary errors), ``X`` ``(B M, in)`` the last
    hidden linear layer's input at the shifted points, ``D`` ``(B M, out)`` float32 the
    sensitivity of each point's residual to that layer's pre-activations ``Z`` (rows of
    point ``b`` belong to ``r_b`` alone), ``H`` the head's input features and ``g``
    ``(B, M)`` = ``d r_b / d nn`` at each shifted input.  The sensitivity to the head's
    input is exact (the head is linear); through the activation it takes the
    activation's exact slope (``Activation.derivative``), or a central difference of
    step ``mu`` for an activation without one.  One forward."""
    model = loss.model
    i = model.linear_index()[-2]
    act = model.activation_scalar(i)
    exact = getattr(model.fused_activation(i), "derivative", None)
    w = model.unflatten(params)[f"{len(model.layers) - 1}.weight"][:, 0].astype(np.float32)
    parts = [(check_points(x, loss.problem.dim), False)]
    if xb is not None and loss.problem.boundary is not None:
        parts.append((check_points(xb, loss.problem.dim), True))
    for pts, boundary in parts:
        step = loss.chunk_points(chunk, boundary)
        for s in range(0, len(pts), step):
            xc = pts[s:s + step]
            y = loss.shifted(xc, boundary)
            B, M, _ = y.shape
            rows = loss.network_inputs(y)
            cache, out = model.linear_cache(params, rows[None])
            loss.count(y)
            X, Z = cache[i][0][0], cache[i][1][0]
            values = out[0, :, 0].astype(np.float64).reshape(B, M)
            r, g = residuals_and_partials(loss, xc, values, boundary)
            D = g.reshape(-1, 1).astype(np.float32) * w[None]
            D *= activation_slope(Z, act, mu, exact)
            yield len(pts), r, X, D, cache[len(model.layers) - 1][0][0], g


def hidden_layer_gradient(loss, params, x, xb=None, mu=1e-3, chunk=8):
    """``(loss, grad)``: the loss at ``x`` (and ``xb``) and its gradient with respect to
    the last hidden linear layer (zero elsewhere), by a local rule and forward passes
    only.  The loss is a linear functional of the network outputs at the shifted
    inputs, so its sensitivity to the head's input features is exact (the head is
    linear); through the layer's activation it becomes ``D = dL/dZ`` by the
    activation's slope (``layer_sensitivities``), and the layer's update is
    ``X^T D`` from its own input ``X`` (``zotrain.zo.local_rule``)."""
    model = loss.model
    i = model.linear_index()[-2]
    acc, value = LayerGradient(model, i, params), 0.0
    for n, r, X, D, _, _ in layer_sensitivities(loss, params, x, xb, mu, chunk):
        value += float(np.sum(r ** 2)) / n
        M = len(X) // len(r)
        acc.add(X, D * np.repeat((2.0 / n) * r, M).astype(np.float32)[:, None])
    grad = np.zeros(model.n_params, np.float32)
    for name, g in acc.result().items():
        grad[model.layout[name].slice] = np.asarray(g).ravel()
    return value, grad


def body_segments(model):
    """The parameter segments ``body_jacobian`` covers: the last hidden linear layer's
    (layout order), then the head's (the last layer's)."""
    return [*model.layout.of_layer(model.linear_index()[-2]),
            *model.layout.of_layer(len(model.layers) - 1)]


def body_columns(loss):
    """Flat indices of the parameters ``body_jacobian`` covers (``body_segments``)."""
    return np.concatenate([np.arange(s.offset, s.offset + s.size)
                           for s in body_segments(loss.model)])


def body_jacobian(loss, params, x, xb=None, mu=1e-3, chunk=8):
    """``(r, J)``: the residuals at ``x`` (then the boundary errors at ``xb``), each
    part scaled by ``1 / sqrt(its number of points)`` so that ``|r|^2`` is the loss,
    and their Jacobian ``(rows, len(body_columns()))`` in the last hidden linear
    layer's and the head's parameters.  The head's columns are exact; the layer's
    are the local rule per point: the sensitivity of point ``b``'s residual to the
    layer's pre-activations (``_layer_sensitivities``) times the layer's own input
    at that point's shifted inputs, projected onto the layer's parameters, all points
    of a chunk at once (``zotrain.zo.local_rule.LayerGradient.grouped``).  Forward
    passes only."""
    model = loss.model
    i = model.linear_index()[-2]
    segs = model.layout.of_layer(i)
    acc = LayerGradient(model, i, params)
    rs, Js = [], []
    for n, r, X, D, H, g in layer_sensitivities(loss, params, x, xb, mu, chunk):
        B, M = g.shape
        J = np.empty((B, sum(s.size for s in segs) + H.shape[1] + 1))
        J[:, -1] = g.sum(axis=1)  # the head's bias
        J[:, -H.shape[1] - 1:-1] = np.matmul(g[:, None, :], H.reshape(B, M, -1))[:, 0]
        got = acc.grouped(X, D, B)  # point b's rows: the b-th block of M
        J[:, :-H.shape[1] - 1] = np.concatenate([got[s.name].reshape(B, -1) for s in segs],
                                                axis=1)
        scale = 1.0 / math.sqrt(n)
        rs.append(scale * r)
        Js.append(scale * J)
    return np.concatenate(rs), np.concatenate(Js)


def lm_step(loss, params, r, J, check, damping, factors=(0.1, 1.0, 10.0, 100.0)):
    """A Levenberg-Marquardt step on ``body_columns()`` for the rows ``r`` ``(R,)`` and
    their Jacobian ``J`` ``(R, columns)``: ``(new params, damping)``.  ``J``'s columns
    are scaled to unit norm (so the layer's and the head's parameters are damped
    alike); the step for each damping ``damping * f`` (``f`` in ``factors``) is solved
    in whichever of the row or the column space is smaller.  The candidates are
    compared, with the parameters before, by their loss at ``check`` (``(points,
    boundary points)``, fresh ones against fitting the rows' noise), all in one
    batched forward: the lowest is taken if it is below the parameters' own (its
    damping is returned), else nothing changes and the damping grows 10x beyond the
    largest.  The damping is capped at the trace of the scaled normal matrix (its
    number of non-zero columns): beyond it every step is already a plain gradient
    step, and more damping only shrinks it until float32 parameters stop moving,
    which, with the check loss then unchanged, would refuse every later step."""
    cols = body_columns(loss)
    norm = np.linalg.norm(J, axis=0)
    cap = float(max(1, np.count_nonzero(norm)))
    norm[norm == 0] = 1.0
    Js = J / norm
    rows, n = Js.shape
    lams = [min(damping, cap) * f for f in factors]
    if rows < n:
        K = Js @ Js.T
        steps = [-(Js.T @ np.linalg.solve(K + lam * np.eye(rows), r)) for lam in lams]
    else:
        K, g = Js.T @ Js, Js.T @ r
        steps = [-np.linalg.solve(K + lam * np.eye(n), g) for lam in lams]
    P = np.repeat(np.asarray(params, np.float32)[None], len(lams) + 1, axis=0)
    P[1:, cols] = (np.asarray(params, np.float64)[cols] + np.array(steps) / norm)
    losses = loss.losses(P, *check)
    losses[~np.isfinite(losses)] = np.inf  # a step that overflows is never taken
    best = int(np.argmin(losses[1:]))
    if not losses[1 + best] < losses[0]:
        return P[0], min(lams[-1] * 10.0, cap)
    return P[1 + best], lams[best]


def ntk_weight(J, Jb):
    """The boundary term's weight by the neural-tangent-kernel trace rule (Wang, Yu and
    Perdikaris, J. Comput. Phys. 449, 2022, Algorithm 1: the weights Tr K / Tr K_rr and
    Tr K / Tr K_bb make the two terms' mean kernel eigenvalues, hence their rates of
    convergence, equal): with the residual's weight 1, ``Tr K_rr / Tr K_bb``, each trace
    per point (the loss terms are means over different numbers of points).  ``J``
    ``(B, P)`` and ``Jb`` ``(Bb, P)``: the residuals' and the unweighted boundary
    errors' Jacobians (``K = J J^T``).  None where it is not a finite positive number."""
    rr = float(np.mean(np.sum(J ** 2, axis=1)))
    bb = float(np.mean(np.sum(Jb ** 2, axis=1)))
    w = rr / bb if bb > 0 else math.inf
    return w if 0 < w < math.inf else None


def solve_head(loss, params, x, ridge, xb=None, tries=6):
    """One Gauss-Newton step on the head for the loss at ``x`` (and ``xb``) plus
    ``ridge |head|^2``: new parameters.  Exact when the residual is affine in its
    fields; otherwise (``|grad u|^2`` terms) the step is damped Levenberg-Marquardt
    style: the first of ``tries`` dampings (0, then trace(A)/P times 1, 10, 100, ...)
    whose loss does not rise, else no change.  The loss before and the losses of
    every damped step come from the Jacobian's pass and one more forward over the
    points (the head is linear in the features).  With an adaptive boundary weight
    (``loss.adaptive``) and both kinds of points, the weight is first set by
    ``ntk_weight`` of the head's Jacobians (the kernel of the parameters the solve
    trains) and kept by ``loss`` for the steps until the next solve."""
    head = loss.head_slice()
    theta = np.asarray(params[head], np.float64)
    A, g = ridge * np.eye(len(theta)), ridge * theta
    base = ridge * float(theta @ theta)
    parts = [(x, False)] if len(x) else []
    if xb is not None and loss.problem.boundary is not None:
        parts.append((xb, True))
    rows = [head_jacobian(loss, params, pts, boundary=boundary) for pts, boundary in parts]
    if loss.adaptive and len(rows) == 2:
        (r, J), (rb, Jb) = rows
        w = ntk_weight(J, Jb / loss.root_weight)
        if w is not None:
            scale = math.sqrt(w) / loss.root_weight
            rows[1] = (rb * scale, Jb * scale)
            loss.set_boundary_weight(w)
    for r, J in rows:
        A += J.T @ J / len(r)
        g += J.T @ r / len(r)
        base += float(np.mean(r ** 2))

    def with_head(h):
        new = np.array(params, np.float32, copy=True)
        new[head] = h
        return new

    if loss.residual_is_affine:
        return with_head(theta - np.linalg.solve(A, g))
    unit = np.trace(A) / len(theta)
    heads = np.array([theta - np.linalg.solve(A + lam * np.eye(len(theta)), g) for lam in
                      [0.0] + [unit * 10.0 ** k for k in range(tries - 1)]])
    # the candidates as float32 parameters, the way the network will hold them
    heads = heads.astype(np.float32).astype(np.float64)
    losses = head_losses(loss, params, heads, x, xb) + ridge * np.sum(heads ** 2, axis=1)
    for h, value in zip(heads, losses):
        if value <= base:
            return with_head(h)
    return np.array(params, np.float32, copy=True)
