import numpy as np
import pytest

from zotrain.pinn import suite
from zotrain.pinn.constraint import HardConstraint
from tests.test_problems import fd_derivatives


CASES = [(f, s) for f in suite.FAMILIES for s in (*suite.SPLITS["dev"], *suite.SPLITS["test"], 7)]


@pytest.mark.parametrize("family,seed", CASES)
def test_the_manufactured_solutions_satisfy_their_residuals_and_data(family, seed):
    p = suite.instance(family, seed)
    p.check()
    x = p.sample(3, 1)
    u, grad, second = fd_derivatives(p.exact, x)
    space = [i for i in range(p.dim) if i != p.time_index]
    lap = second[:, space].sum(1)
    u_t = grad[:, p.time_index] if p.time_index is not None else None
    r = p.residual(x, u, grad, lap, u_t)
    scale = np.abs(lap).max() + np.abs(u).max() + 1.0
    assert np.abs(r).max() < 1e-5 * scale
    wrong = p.residual(x, u, grad, lap + 0.01 * scale, u_t)  # the check can fail
    assert np.abs(wrong).max() > 1e-4 * scale
    if p.transform is not None:  # the hard constraint holds the exact data for any network
        xt = x.copy()
        xt[:, p.time_index] = 1.0 if family == "hjb" else 0.0
        for nn in (np.zeros(3), np.full(3, 5.0)):
            np.testing.assert_allclose(p.transform(xt, nn), p.exact(xt), rtol=1e-12, atol=1e-12)
        HardConstraint(p)  # analytic: complex-step derivatives agree with differences
    if p.boundary is not None:
        xb = p.sample_boundary(4, 2)
        np.testing.assert_allclose(p.boundary(xb), p.exact(xb), rtol=1e-12)


def test_instances_are_drawn_from_the_seed():
    a, b, c = suite.instance("hjb", 5), suite.instance("hjb", 5), suite.instance("hjb", 6)
    x = a.sample(4, 0)
    if a.dim == c.dim:
        assert not np.allclose(a.exact(x), c.exact(x))
    np.testing.assert_array_equal(a.exact(x), b.exact(x))
    assert {p.name for p in suite.instances("dev")}.isdisjoint(
        p.name for p in suite.instances("test"))
    with pytest.raises(ValueError, match="unknown family 'wave'"):
        suite.instance("wave", 0)
    with pytest.raises(ValueError, match="unknown split"):
        suite.instances("train")
