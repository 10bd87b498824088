"""L-BFGS of the later frames (stylepuppet.optim.lbfgs) against the BFGS formula and on quadratics."""

from __future__ import annotations

import torch

from stylepuppet.optim import lbfgs


def quadratic(n: int, seed: int, shift: float = 0.0):
    """f(x) = ½ (x − x*)ᵀ A (x − x*) with a random SPD A of condition number 10; the objective and x*."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.5, 5.0, n, dtype=torch.float64)) @ q.T
    best = torch.randn(n, generator=g, dtype=torch.float64) + shift
    calls = {"n": 0}

    def objective(x: torch.Tensor) -> lbfgs.Evaluation:
        calls["n"] += 1
        r = x - best
        return lbfgs.Evaluation(x, float(0.5 * r @ a @ r), a @ r, {})

    return objective, best, a, calls


def test_direction_is_the_bfgs_inverse_hessian_times_the_gradient():
    """The two-loop recursion equals the BFGS updates of H₀ = (s·y / y·y)·I applied pair by pair."""
    n, m = 6, 4
    g = torch.Generator().manual_seed(0)
    _, _, a, _ = quadratic(n, 1)
    s = torch.randn(m, n, generator=g, dtype=torch.float64)
    y = s @ a  # curvature pairs of the quadratic (A symmetric)
    grad = torch.randn(n, generator=g, dtype=torch.float64)
    h = (s[-1] @ y[-1]) / (y[-1] @ y[-1]) * torch.eye(n, dtype=torch.float64)
    for si, yi in zip(s, y):
        rho = 1 / (si @ yi)
        left = torch.eye(n, dtype=torch.float64) - rho * torch.outer(si, yi)
        h = left @ h @ left.T + rho * torch.outer(si, si)
    assert torch.allclose(lbfgs.direction(grad, s, y), -h @ grad, atol=1e-12)
    assert torch.equal(lbfgs.direction(grad, s[:0], y[:0]), -grad)


def test_remember_keeps_the_newest_pairs_with_positive_curvature():
    s = y = torch.zeros(0, 3)
    for i in range(1, 5):
        s, y = lbfgs.remember(s, y, torch.full((3,), float(i)), torch.ones(3), history=3)
    assert s[:, 0].tolist() == [2.0, 3.0, 4.0]
    s2, y2 = lbfgs.remember(s, y, torch.ones(3), -torch.ones(3), history=3)
    assert s2 is s and y2 is y  # s·y < 0: no curvature information, nothing remembered


def test_minimise_finds_the_minimum_of_a_quadratic_and_never_raises_the_loss():
    objective, best, _, calls = quadratic(20, 2)
    x0 = torch.zeros(20, dtype=torch.float64)
    losses: list[float] = []
    found, s, y, used = lbfgs.minimise(objective, x0, 60, x0[None, :0].reshape(0, 20), x0[None, :0].reshape(0, 20),
                                       on_step=lambda _, ev: losses.append(ev.loss))
    assert used == calls["n"] <= 60
    assert torch.allclose(found.x, best, atol=1e-5)
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert 0 < s.shape[0] <= lbfgs.HISTORY and s.shape == y.shape


def test_constrain_projects_every_point_taken():
    objective, _, _, _ = quadratic(5, 4)
    empty = torch.zeros(0, 5, dtype=torch.float64)
    seen: list[torch.Tensor] = []

    def on_sphere(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x / x.norm()

    found, *_ = lbfgs.minimise(objective, torch.ones(5, dtype=torch.float64) / 5**0.5, 10, empty, empty,
                               constrain=on_sphere)
    assert seen and abs(float(found.x.norm()) - 1) < 1e-12
