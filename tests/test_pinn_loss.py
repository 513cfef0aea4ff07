import dataclasses

import numpy as np
import pytest

import zotrain
from zotrain.pinn import problems, solvers, suite
from zotrain.pinn.derivatives import frame_rule, rule, shifted_inputs, smoothed_derivatives, \
    value_weights
from zotrain.pinn.constraint import HardConstraint
from zotrain.pinn.inputs import width as input_width
from zotrain.pinn.loss import PinnLoss
from zotrain.pinn.problem import Problem, ProblemError
from tests import reference


def head_gradient(loss, params, x):
    """The loss at ``x`` and its gradient in the head: ``2 r^T J / n`` from the exact
    head Jacobian."""
    r, J = solvers.head_jacobian(loss, params, x)
    grad = np.zeros(loss.model.n_params, np.float32)
    grad[loss.head_slice()] = 2.0 * (r @ J) / len(r)
    return float(np.mean(r ** 2)), grad


@pytest.mark.parametrize("name,method,inputs", [
    ("hjb20d", "degree5", "coordinates"), ("poisson2d", "sparse-grid", "coordinates"),
    ("black-scholes", "sparse-grid", "coordinates"), ("hjb20d", "degree5", "quadratic"),
    ("poisson2d", "sparse-grid", "quadratic"), ("hjb20d", "degree5", "radius"),
    ("poisson2d", "sparse-grid", "radius")])
def test_loss_many_matches_a_per_set_reference(name, method, inputs):
    p = problems.get(name)
    model = zotrain.pinn_mlp(in_features=input_width(inputs, p.dim), width=16, rank=2)
    P = np.stack([model.init(s) for s in range(2)])
    x = p.sample(5, seed=0)
    loss = PinnLoss(model, p, sigma=0.2, method=method, level=3, inputs=inputs)
    got = loss(P, x)
    stein = rule(p.dim, method, level=3)
    lo, w = np.array(p.lower), np.array(p.upper) - np.array(p.lower)

    def net_inputs(Y):  # box coordinates y, (y, y^2) per coordinate, or (y, radius)
        if inputs == "quadratic":
            return np.concatenate([Y, Y ** 2], axis=1)
        space = np.delete(Y, p.time_index, axis=1) if p.time_index is not None else Y
        radius = 4 * ((space - 0.5) ** 2).mean(axis=1, keepdims=True)
        return np.concatenate([Y, radius], axis=1) if inputs == "radius" else Y

    for q in range(2):  # the network sees (a map of) box coordinates y; derivatives are in x
        f = lambda Y: reference.forward(model, P[q], net_inputs(Y))[:, 0]  # noqa
        d = smoothed_derivatives(f, (x - lo) / w, 0.2, stein, p.time_index, scale=w)
        # the hard constraint on the smoothed network: u = a + c N_sigma, by the product rule
        u, grad, lap, _ = reference.constrained_fields(p, x, d.u, d.grad, d.lap)
        r = p.residual(x, u, grad, lap, grad[:, p.time_index] if p.time_index is not None
                       else None)
        assert got[q] == pytest.approx(np.mean(r ** 2), rel=1e-3)


def test_bad_inputs():
    p = problems.get("poisson2d")
    with pytest.raises(ValueError, match="poisson2d needs 2 -> 1"):
        PinnLoss(zotrain.pinn_mlp(in_features=3, width=8), p)
    loss = PinnLoss(zotrain.pinn_mlp(in_features=2, width=8), p)
    with pytest.raises(ValueError, match="collocation points must be \\(B, 2\\)"):
        loss(loss.model.init(0), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        PinnLoss(zotrain.pinn_mlp(in_features=2, width=8), p, sigma=-1)
    with pytest.raises(ValueError, match="poisson2d needs 4 -> 1 \\(inputs 'quadratic'\\)"):
        PinnLoss(zotrain.pinn_mlp(in_features=2, width=8), p, inputs="quadratic")
    with pytest.raises(ValueError, match="unknown network inputs 'cubic'; known: coordinates"):
        PinnLoss(zotrain.pinn_mlp(in_features=2, width=8), p, inputs="cubic")


def test_pinn_cli_writes_files_and_rejects_bad_input(tmp_path, capsys):
    import json

    from zotrain import cli

    out = tmp_path / "p"
    assert cli.main(["pinn", "poisson2d", "--iters", "4", "--width", "8", "--out", str(out),
                     "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["rel_l2"] > 0 and m["forward_passes"] > 0 and m["trainable_params"] > 0
    assert (out / "model.npz").exists() and (out / "log.jsonl").exists()
    for args, msg in ((["navier"], "unknown problem 'navier'"),
                      (["hjb20d", "--sigma", "0"], "sigma must be > 0"),
                      (["hjb20d", "--level", "0"], "level must be an integer >= 1"),
                      (["hjb20d", "--backend", "onnxruntime", "--body", "local"], "--body zo")):
        assert cli.main(["pinn"] + args + ["--out", str(tmp_path / "x"), "--quiet"]) == 2
        assert msg in capsys.readouterr().err
    for args, msg in ((["hjb20d", "--derivatives", "autodiff"], "invalid choice: 'autodiff'"),
                      (["hjb20d", "--inputs", "cubic"], "invalid choice: 'cubic'")):
        with pytest.raises(SystemExit) as e:  # the choices: argparse names them
            cli.main(["pinn"] + args + ["--out", str(tmp_path / "x"), "--quiet"])
        assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.parametrize("name", ["hjb20d", "black-scholes", "poisson2d"])
def test_head_gradient_matches_finite_differences(name):
    p = problems.get(name)
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2)
    params = model.init(3)
    x = p.sample(6, seed=1)
    loss = PinnLoss(model, p, sigma=0.1, method="degree5")
    value, grad = head_gradient(loss, params, x)
    assert value == pytest.approx(loss(params, x)[0], rel=1e-5)
    head = [s for s in model.layout if s.name.startswith("4.")]
    idx = np.concatenate([np.arange(s.offset, s.offset + s.size) for s in head])
    assert np.all(grad[np.setdiff1d(np.arange(model.n_params), idx)] == 0)
    rng = np.random.default_rng(0)
    for _ in range(3):  # directional derivatives along random head directions (loss is smooth)
        u = np.zeros(model.n_params)
        u[idx] = rng.standard_normal(len(idx))
        h = 1e-2
        P = np.stack([params + h * u, params - h * u]).astype(np.float32)
        fd = (loss(P, x)[0] - loss(P, x)[1]) / (2 * h)
        assert grad @ u == pytest.approx(fd, rel=2e-2, abs=1e-3 * abs(value))


@pytest.mark.parametrize("name,method,depth", [("hjb20d", "degree5", 2),
                                               ("poisson2d", "degree5", 2),
                                               ("heat100d", "radial", 2),
                                               ("heat100d", "radial", 1)])
def test_hidden_layer_gradient_matches_finite_differences(name, method, depth):
    """The local rule's update of the last hidden layer is the loss's gradient in that layer
    (residual and boundary terms), along random directions of the layer's parameters;
    with one hidden layer, the whole body's gradient."""
    p = problems.get(name)
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2, depth=depth)
    params = model.init(3)
    loss = PinnLoss(model, p, sigma=0.1, method=method)
    x = p.sample(6, seed=1)
    xb = p.sample_boundary(3, seed=2) if p.boundary is not None else None
    params = solvers.solve_head(loss, params, p.sample(64, 4), 1e-6, xb)  # a loss not dominated by
    value, grad = solvers.hidden_layer_gradient(loss, params, x, xb)     # the head's misfit
    assert value == pytest.approx(loss(params[None], x, xb)[0], rel=1e-3)
    layer = [s for s in model.layout if s.layer == 2 * (depth - 1)]
    idx = np.concatenate([np.arange(s.offset, s.offset + s.size) for s in layer])
    assert np.all(grad[np.setdiff1d(np.arange(model.n_params), idx)] == 0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = np.zeros(model.n_params)
        u[idx] = rng.standard_normal(len(idx))
        u /= np.linalg.norm(u)
        h = 1e-2
        lp, lm = loss(np.stack([params + h * u, params - h * u]).astype(np.float32), x, xb)
        assert grad @ u == pytest.approx((lp - lm) / (2 * h), rel=3e-2, abs=1e-3 * value)


@pytest.mark.parametrize("name,method,depth,inputs", [("hjb20d", "degree5", 2, "coordinates"),
                                                      ("heat100d", "radial", 1, "coordinates"),
                                                      ("hjb100d", "radial", 1, "coordinates"),
                                                      ("heat100d", "radial", 1, "quadratic"),
                                                      ("hjb100d", "radial", 1, "radius")])
def test_body_jacobian_matches_finite_differences(name, method, depth, inputs):
    """The Jacobian of every point's residual (and boundary error) in the last hidden layer's
    and the head's parameters: central differences of the residuals along random
    directions of those parameters; its gradient 2 J^T r is the local rule's and the
    exact head gradient."""
    p = problems.get(name)
    model = zotrain.pinn_mlp(in_features=input_width(inputs, p.dim), width=16, rank=2,
                             depth=depth)
    loss = PinnLoss(model, p, sigma=0.1, method=method, inputs=inputs)
    x = p.sample(5, seed=1)
    xb = p.sample_boundary(3, seed=2) if p.boundary is not None else None
    params = solvers.solve_head(loss, model.init(3), p.sample(64, 4), 1e-6, xb)
    cols = solvers.body_columns(loss)
    r, J = solvers.body_jacobian(loss, params, x, xb)
    assert J.shape == (len(x) + (0 if xb is None else len(xb)), len(cols))
    assert r @ r == pytest.approx(loss(params[None], x, xb)[0], rel=1e-4)
    _, grad = solvers.hidden_layer_gradient(loss, params, x, xb)
    layer = cols[:len(cols) - (loss.head_slice().stop - loss.head_slice().start)]
    np.testing.assert_allclose((2 * J.T @ r)[:len(layer)], grad[layer], rtol=1e-3,
                               atol=1e-4 * np.abs(grad).max())
    head_r, head_J = solvers.head_jacobian(loss, params, x)
    # the residual's partials are taken at the network's float32 output here and at the
    # float64 head's output there: a nonlinear residual (hjb100d's |grad u|^2, without a
    # hard constraint to scale it) sees their rounding, ~4e-6 relative
    np.testing.assert_allclose(J[:len(x), len(layer):] * np.sqrt(len(x)), head_J, rtol=2e-5,
                               atol=1e-9 * np.abs(head_J).max())
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = rng.standard_normal(len(cols))
        u /= np.linalg.norm(u)
        h = 1e-2
        moved = [params.astype(np.float64) for _ in range(2)]
        moved[0][cols] += h * u
        moved[1][cols] -= h * u
        rp, rm = (solvers.body_jacobian(loss, m.astype(np.float32), x, xb)[0] for m in moved)
        np.testing.assert_allclose(J @ u, (rp - rm) / (2 * h), rtol=3e-2,
                                   atol=3e-3 * np.abs(J @ u).max())


def test_head_solve_is_exact_for_affine_residuals_and_never_raises_a_nonlinear_loss():
    affine = {n: PinnLoss(zotrain.pinn_mlp(in_features=problems.get(n).dim, width=8, rank=2),
                          problems.get(n), method="degree5").residual_is_affine
              for n in ("hjb20d", "poisson2d", "heat100d", "hjb100d")}
    assert affine == {"hjb20d": False, "poisson2d": True, "heat100d": True, "hjb100d": False}
    # u_t + Lap u - |grad u|^2 with the terminal condition as a hard constraint,
    # g(x) + (T - t) nn: there a full Gauss-Newton step overshoots
    g = problems.get("hjb100d").boundary
    p = dataclasses.replace(problems.get("hjb100d"), boundary=None, boundary_sampler=None,
                            transform=lambda x, nn: g(x) + (1.0 - x[:, 100]) * nn)
    model = zotrain.pinn_mlp(in_features=p.dim, width=32, rank=2)
    loss = PinnLoss(model, p, method="radial", samples=1)
    params = model.init(0)
    x = p.sample(64, 1)
    before = loss.mean_loss(params, x)
    loss.residual_is_affine = True  # the plain Gauss-Newton step raises the loss here
    assert loss.mean_loss(solvers.solve_head(loss, params, x, 1e-6), x) > before
    loss.residual_is_affine = False
    for _ in range(3):
        new = solvers.solve_head(loss, params, x, 1e-6)
        assert loss.mean_loss(new, x) + 1e-6 * np.sum(new[loss.head_slice()].astype(float) ** 2) \
            <= loss.mean_loss(params, x) + 1e-6 * np.sum(params[loss.head_slice()].astype(float) ** 2)
        params = new
    assert loss.mean_loss(params, x) < 0.8 * before


def test_damped_head_solve_costs_one_extra_pass_and_picks_the_first_step_that_does_not_raise():
    """The damped steps' losses come from one forward over the points (the head is
    linear in the features): the same choice as evaluating each candidate network."""
    p = problems.get("hjb100d")
    model = zotrain.pinn_mlp(in_features=p.dim, width=32, rank=2)
    loss = PinnLoss(model, p, method="radial", samples=1)
    params, x = model.init(3), p.sample(48, 2)
    head, ridge = loss.head_slice(), 1e-6
    theta = params[head].astype(np.float64)
    r, J = solvers.head_jacobian(loss, params, x)
    A = ridge * np.eye(len(theta)) + J.T @ J / len(r)
    g = ridge * theta + J.T @ r / len(r)
    unit = np.trace(A) / len(theta)

    def full(q):  # the loss by the network's own forward, ridge included
        return loss.mean_loss(q, x) + ridge * np.sum(q[head].astype(np.float64) ** 2)

    expected, candidates = params, []
    for lam in [0.0] + [unit * 10.0 ** k for k in range(5)]:
        q = params.copy()
        q[head] = theta - np.linalg.solve(A + lam * np.eye(len(theta)), g)
        candidates.append(q[head].astype(np.float64))
        if full(q) <= full(params):
            expected = q
            break
    np.testing.assert_allclose(solvers.head_losses(loss, params, candidates, x),
                               [loss.mean_loss(np.concatenate([params[:head.start], c]).astype(
                                   np.float32), x) for c in candidates], rtol=1e-4)
    # (the network's own head runs in float32; the Stein rows' cancellation amplifies it)
    before = loss.account.points
    new = solvers.solve_head(loss, params, x, ridge)
    assert loss.account.points - before == 2 * len(x)  # the Jacobian's pass and one more
    np.testing.assert_array_equal(new, expected)
    assert not np.array_equal(new, params)


@pytest.mark.parametrize("name", [n for n in problems.PROBLEMS
                                  if problems.get(n).transform is not None])
def test_the_hard_constraints_fields_by_complex_step_match_finite_differences(name):
    """``HardConstraint.fields``: a and c and their derivatives (complex step, float64)
    against the transform itself and the central differences of the reference, through
    the product rule with a random N; the Hessian rows too for a problem that asks."""
    check_constraint_fields(problems.get(name))


def test_a_full_hessians_mixed_derivatives_of_the_constraint_match_finite_differences():
    p = Problem("mixed", 3, 2, (0.0,) * 3, (1.0, 2.0, 1.0),
                residual=lambda x, u, grad, lap, u_t, hess: u_t + lap + hess[:, 0, 1],
                transform=lambda x, nn: np.exp(x[:, 0] * x[:, 1]) + x[:, 2] * x[:, 0] ** 2 * nn,
                hessian="full", whole_space=True)
    check_constraint_fields(p)


def check_constraint_fields(p):
    x = p.sample(3, 5)
    rng = np.random.default_rng(1)
    n, g, lap = rng.standard_normal(3), rng.standard_normal((3, p.dim)), rng.standard_normal(3)
    hess = {None: None, "diagonal": rng.standard_normal((3, p.dim)),
            "full": rng.standard_normal((3, p.dim, p.dim))}[p.hessian]
    con = HardConstraint(p, np.subtract(p.upper, p.lower), p.hessian)
    a, c = con.affine(x)
    np.testing.assert_allclose(a + c * n, p.transform(x, n), rtol=1e-12, atol=1e-12)
    N = np.concatenate([n[:, None], g, lap[:, None]] +
                       ([] if hess is None else [hess.reshape(3, -1)]), axis=1)
    U = con.apply(*con.fields(x), N)
    want = reference.constrained_fields(p, x, n, g, lap, hess)
    scale = np.abs(U).max()
    np.testing.assert_allclose(U[:, 0], want[0], rtol=1e-12)
    np.testing.assert_allclose(U[:, 1:p.dim + 1], want[1], rtol=1e-6, atol=1e-7 * scale)
    np.testing.assert_allclose(U[:, p.dim + 1], want[2], rtol=1e-5, atol=1e-5 * scale)
    if hess is not None:
        np.testing.assert_allclose(U[:, p.dim + 2:], want[3].reshape(3, -1), rtol=1e-5,
                                   atol=1e-5 * scale)


def test_the_product_rules_adjoint_is_its_transpose():
    """``adjoint(C, dU) . N == dU . (apply(0, C, N))`` for random fields, every Hessian
    layout, with a time coordinate."""
    rng = np.random.default_rng(0)
    for hessian, rows in ((None, 0), ("diagonal", 4), ("full", 16)):
        p = dataclasses.replace(problems.get("poisson2d"), name="t", dim=4, time_index=3,
                                lower=(0.0,) * 4, upper=(1.0,) * 4, hessian=hessian,
                                transform=lambda x, nn: x[:, 0] + x[:, 1] * x[:, 3] * nn)
        con = HardConstraint(p, None, hessian)
        R = 4 + 2 + rows
        C, N, dU = (rng.standard_normal((5, R)) for _ in range(3))
        lhs = np.sum(con.adjoint(C, dU) * N, axis=1)
        rhs = np.sum(dU * con.apply(np.zeros((5, R)), C, N), axis=1)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("transform", [
    lambda x, nn: np.abs(x[:, 0] - 0.5) + x[:, 0] * nn,
    lambda x, nn: np.asarray(x, np.float64)[:, 0] ** 2 + nn])
def test_a_transform_complex_step_cannot_differentiate_is_refused(transform):
    p = dataclasses.replace(problems.get("poisson2d"), transform=transform, name="kinky")
    with pytest.raises(ProblemError, match="problem 'kinky': transform.*analytic"):
        HardConstraint(p, None)


def test_a_curved_hard_constraint_holds_exactly_for_the_predictor():
    """u = a + c N_sigma: where c = 0 the predictor is a, to 1e-10 in float64, however curved
    a is and whatever the network (before: the smoothed a, off by its smoothing bias)."""
    d = 3
    p = Problem("curved", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1),
                residual=lambda x, u, grad, lap, u_t: u_t + lap,
                transform=lambda x, nn: np.log(1 + np.exp(3 * x[:, :d].sum(1))) +
                (1 - x[:, d]) * nn, whole_space=True)
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2)
    loss = PinnLoss(model, p, sigma=0.1, method="degree5")
    x = p.sample(20, 1)
    x[:, d] = 1.0
    exact = np.log(1 + np.exp(3 * x[:, :d].sum(1)))
    np.testing.assert_allclose(loss.predict(model.init(0), x), exact, rtol=0, atol=1e-10)


def test_boundary_weight_scales_the_boundary_term_and_its_rows():
    """With weight w the loss is the mean squared residual plus w times the mean squared
    boundary error, in every form: the loss, the batched losses, the Levenberg-Marquardt
    rows (boundary rows times sqrt(w), residual rows unchanged) and the head's rows."""
    p = problems.get("heat100d")
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2, depth=1)
    x, xb = p.sample(4, seed=1), p.sample_boundary(3, seed=2)
    one, four = (PinnLoss(model, p, sigma=0.1, method="radial", boundary_weight=w)
                 for w in (1.0, 4.0))
    params = solvers.solve_head(one, model.init(3), p.sample(64, 4), 1e-6, xb)
    interior = one(params[None], x)[0]
    boundary = one(params[None], x, xb)[0] - interior
    assert interior > 0 and boundary > 0
    assert four(params[None], x, xb)[0] == pytest.approx(interior + 4 * boundary, rel=1e-6)
    assert four.losses(params[None], x, xb)[0] == pytest.approx(interior + 4 * boundary,
                                                                rel=1e-6)
    (r1, J1), (r4, J4) = (solvers.body_jacobian(loss, params, x, xb) for loss in (one, four))
    np.testing.assert_allclose(r4[:len(x)], r1[:len(x)])
    np.testing.assert_allclose(J4[:len(x)], J1[:len(x)])
    np.testing.assert_allclose(r4[len(x):], 2 * r1[len(x):], rtol=1e-12)
    np.testing.assert_allclose(J4[len(x):], 2 * J1[len(x):], rtol=1e-12)
    h1, h4 = (solvers.head_jacobian(loss, params, xb, boundary=True) for loss in (one, four))
    np.testing.assert_allclose(h4[0], 2 * h1[0], rtol=1e-12)
    np.testing.assert_allclose(h4[1], 2 * h1[1], rtol=1e-12)


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_boundary_weight(weight):
    p = problems.get("heat100d")
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2, depth=1)
    with pytest.raises(ValueError, match="boundary_weight must be a finite number > 0"):
        PinnLoss(model, p, boundary_weight=weight)


def test_the_frame_boundary_rule_smooths_boundary_values_in_every_form():
    """boundary_rule="frame": the boundary error is u_sigma by the frame rule (2 d
    evaluations, by hand from the reference forward) minus the data, in the loss, the
    batched losses, the Levenberg-Marquardt rows and the head's rows; the head's boundary
    columns are the error's exact change per head parameter; the residual rows are those of
    the default rule; point_forwards counts the boundary points at (2 d + 1) / M of a point."""
    p = problems.get("heat100d")
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2, depth=1)
    x, xb = p.sample(4, seed=1), p.sample_boundary(3, seed=2)
    same, frame = (PinnLoss(model, p, sigma=0.1, method="radial", boundary_rule=b, seed=5)
                   for b in ("same", "frame"))
    params = solvers.solve_head(same, model.init(3), p.sample(64, 4), 1e-6, xb)
    stein = frame_rule(p.dim, 5)
    pts = shifted_inputs(xb, 0.1, stein)  # heat100d's box is [0, 1]^101
    nn = reference.forward(model, params, pts.reshape(-1, p.dim))[:, 0]
    u = p.transform(xb, nn.reshape(pts.shape[:2]) @ value_weights(stein))  # a + c N_sigma
    err = u - p.boundary(xb)
    interior = same(params[None], x)[0]
    assert frame(params[None], x)[0] == pytest.approx(interior, rel=1e-12)
    before = frame.account.points
    assert frame(params[None, :].repeat(2, 0), x, xb) == pytest.approx(
        interior + np.mean(err ** 2), rel=1e-4)
    assert frame.account.points - before == pytest.approx(
        2 * (len(x) + len(xb) * (2 * p.dim + 1) / frame.evaluations))
    assert frame.losses(params[None], x, xb)[0] == pytest.approx(interior + np.mean(err ** 2),
                                                                 rel=1e-4)
    (r1, J1), (rf, Jf) = (solvers.body_jacobian(loss, params, x, xb) for loss in (same, frame))
    np.testing.assert_allclose(rf[:len(x)], r1[:len(x)])
    np.testing.assert_allclose(Jf[:len(x)], J1[:len(x)])
    np.testing.assert_allclose(rf[len(x):] * np.sqrt(len(xb)), err, rtol=1e-3, atol=1e-6)
    r, J = solvers.head_jacobian(frame, params, xb, boundary=True)
    np.testing.assert_allclose(r, err, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(J, Jf[len(x):, -J.shape[1]:] * np.sqrt(len(xb)), rtol=1e-6)
    head, h = frame.head_slice(), 1e-2
    for k in (0, 5, J.shape[1] - 1):  # a weight, another, the bias
        moved = params.copy()
        moved[head.start + k] += h
        step = solvers.head_jacobian(frame, moved, xb, boundary=True)[0] - r
        np.testing.assert_allclose(step / (moved[head.start + k] - params[head.start + k]),
                                   J[:, k], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("rule_name", ["full", "degree5", None, 3])
def test_bad_boundary_rule(rule_name):
    p = problems.get("heat100d")
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2, depth=1)
    with pytest.raises(ValueError, match="boundary_rule must be one of"):
        PinnLoss(model, p, boundary_rule=rule_name)


def test_adaptive_boundary_weight_is_the_ntk_trace_ratio_by_hand():
    """A head solve with the adaptive weight sets it to the ratio of the kernels' traces
    per point, mean_i |dr_i/dhead|^2 / mean_j |db_j/dhead|^2 (Wang, Yu and Perdikaris
    2022), here from central differences of the residuals and the unweighted boundary
    errors in each head parameter (exact up to rounding: both are affine in the head);
    the solve is then the solve with that weight held fixed."""
    p = suite.instance("poisson", 101)  # 5-D, boundary data on the faces
    model = zotrain.pinn_mlp(in_features=p.dim, width=12, rank=2, depth=1)
    params = model.init(0)
    x, xb = p.sample(40, 1), p.sample_boundary(10, 2)  # unequal counts: means, not sums
    fixed = PinnLoss(model, p, boundary_weight=1.0)
    head = fixed.head_slice()

    def rows(P, pts, boundary):
        values = fixed.values(P, pts, boundary)
        return fixed.residuals(pts, values if boundary else values[0], boundary)

    def jacobian(pts, boundary, h=0.5):
        cols = []
        for k in range(head.start, head.stop):
            up, down = params.copy(), params.copy()
            up[k] += h
            down[k] -= h
            cols.append((np.ravel(rows(up[None], pts, boundary)) -
                         np.ravel(rows(down[None], pts, boundary))) / (2 * h))
        return np.stack(cols, axis=1)

    J, Jb = jacobian(x, False), jacobian(xb, True)
    by_hand = np.mean(np.sum(J ** 2, 1)) / np.mean(np.sum(Jb ** 2, 1))
    adaptive = PinnLoss(model, p)
    assert adaptive.adaptive and adaptive.boundary_weight == 1.0
    solved = solvers.solve_head(adaptive, params, x, 1e-6, xb)
    assert adaptive.boundary_weight == pytest.approx(by_hand, rel=1e-4)
    held = PinnLoss(model, p, boundary_weight=adaptive.boundary_weight)
    np.testing.assert_allclose(solvers.solve_head(held, params, x, 1e-6, xb), solved,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(solvers.solve_head(fixed, params, x, 1e-6, xb)[head], solved[head],
                           rtol=1e-3)
