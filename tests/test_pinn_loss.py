import numpy as np
import pytest

import zotrain
from zotrain.pinn import problems
from zotrain.pinn.derivatives import rule, smoothed_derivatives
from zotrain.pinn.loss import PinnLoss
from tests import reference


@pytest.mark.parametrize("name", ["hjb20d", "poisson2d"])
def test_loss_many_matches_a_per_set_reference(name):
    p = problems.get(name)
    model = zotrain.pinn_mlp(in_features=p.dim, width=16, rank=2)
    P = np.stack([model.init(s) for s in range(2)])
    x = p.sample(5, seed=0)
    loss = PinnLoss(model, p, sigma=0.2, level=2)
    got = loss(P, x)
    nodes, weights = rule(p.dim, level=2)
    for q in range(2):
        f = lambda X: p.transform(X, reference.forward(model, P[q], X)[:, 0])  # noqa: E731
        d = smoothed_derivatives(f, x, 0.2, nodes, weights, p.time_index)
        r = p.residual(x, d.u, d.grad, d.lap, d.u_t)
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
                      (["hjb20d", "--derivatives", "autodiff"], "unknown derivative method"),
                      (["hjb20d", "--sigma", "0"], "sigma must be > 0"),
                      (["hjb20d", "--level", "0"], "level must be an integer >= 1")):
        assert cli.main(["pinn"] + args + ["--out", str(tmp_path / "x"), "--quiet"]) == 2
        assert msg in capsys.readouterr().err
