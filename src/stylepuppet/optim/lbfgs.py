"""Limited-memory BFGS for the later frames: a quasi-Newton step from curvature carried across frames.

A later frame starts close to its answer and its objective is nearly the previous frame's, so the
curvature pairs (s = x_{k+1} − x_k, y = g_{k+1} − g_k) learnt on earlier frames are still a good model
of this one. Carrying them lets the first step of a frame already be a Newton-like step, where a fresh
quasi-Newton method (or a fresh Adam) would begin with a plain, badly scaled gradient step. torch's
``torch.optim.LBFGS`` keeps its pairs in private optimiser state tied to one tensor and would pair the
end of one frame with the start of the next; here the pairs are plain tensors the run state saves, so
a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Curvature pairs kept (torch's default history size).
HISTORY = 10
#: Armijo's sufficient-decrease constant of the backtracking line search.
ARMIJO = 1e-4
#: Pairs with s·y at or below this are not curvature information (a flat or non-convex stretch): skipped.
MIN_CURVATURE = 1e-10


def dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


def direction(grad: Tensor, s: Tensor, y: Tensor) -> Tensor:
    """−H·grad by the two-loop recursion over pairs ``s``, ``y`` [m, *grad.shape] (oldest first), with the
    initial inverse Hessian scaled by the newest pair (s·y / y·y); −grad when there are no pairs."""
    q = grad.clone()
    m = s.shape[0]
    if m == 0:
        return -q
    rho = 1.0 / (s * y).flatten(1).sum(1)
    alpha = torch.empty(m, dtype=grad.dtype, device=grad.device)
    for i in range(m - 1, -1, -1):
        alpha[i] = rho[i] * dot(s[i], q)
        q -= alpha[i] * y[i]
    q *= dot(s[-1], y[-1]) / dot(y[-1], y[-1])
    for i in range(m):
        beta = rho[i] * dot(y[i], q)
        q += (alpha[i] - beta) * s[i]
    return -q


def remember(s: Tensor, y: Tensor, new_s: Tensor, new_y: Tensor, history: int = HISTORY) -> tuple[Tensor, Tensor]:
    """The pairs with (``new_s``, ``new_y``) appended, the oldest dropped beyond ``history``; unchanged when
    the new pair carries no positive curvature."""
    if float(dot(new_s, new_y)) <= MIN_CURVATURE:
        return s, y
    return torch.cat([s, new_s[None]])[-history:], torch.cat([y, new_y[None]])[-history:]


def shorter_step(t: float, loss: float, slope: float, trial: float) -> float:
    """The next, shorter trial step after step ``t`` failed Armijo's test: the minimum of the parabola through
    the loss and slope at 0 and the loss at ``t``, kept within [0.1·t, 0.5·t] (a step far too long is cut by
    ten at once, a nearly good one halved)."""
    curvature = trial - loss - slope * t
    best = -slope * t * t / (2 * curvature) if curvature > 0 else 0.5 * t
    return min(0.5 * t, max(0.1 * t, best))


@dataclass
class Evaluation:
    """A point, its loss (read back to the host: the line search compares losses) and gradient."""

    x: Tensor
    loss: float
    grad: Tensor
    terms: dict[str, Tensor]


Objective = Callable[[Tensor], Evaluation]


def minimise(objective: Objective, x: Tensor, evaluations: int, s: Tensor, y: Tensor,
             constrain: Callable[[Tensor], Tensor] = lambda v: v,
             on_step: Callable[[int, Evaluation], None] | None = None) -> tuple[Evaluation, Tensor, Tensor, int]:
    """At most ``evaluations`` evaluations of ``objective`` (each one forward + backward) from ``x``.

    Each iteration tries the quasi-Newton step (t = 1, or t = min(1, 1/‖g‖₁) without pairs) and shortens
    it (:func:`shorter_step`) until Armijo's condition holds or the budget is spent; a trial that does not
    lower the loss is not taken. ``constrain`` projects every trial point (the latent's support). Returns
    the best evaluation, the updated pairs and the evaluations used.
    """
    best = objective(x)
    used = 1
    while used < evaluations:
        d = direction(best.grad, s, y)
        slope = float(dot(best.grad, d))
        if slope >= 0:  # not a descent direction (stale pairs): fall back to the gradient
            s, y = s[:0], y[:0]
            d = -best.grad
            slope = float(dot(best.grad, d))
        t = 1.0 if s.shape[0] else min(1.0, 1.0 / float(best.grad.abs().sum()))
        while True:
            trial = objective(constrain(best.x + t * d))
            used += 1
            if trial.loss <= best.loss + ARMIJO * t * slope or used >= evaluations:
                break
            t = shorter_step(t, best.loss, slope, trial.loss)
        if trial.loss >= best.loss:
            break
        s, y = remember(s, y, trial.x - best.x, trial.grad - best.grad)
        best = trial
        if on_step is not None:
            on_step(used, best)
    return best, s, y, used
