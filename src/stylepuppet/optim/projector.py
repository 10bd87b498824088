"""Optimisation of one frame's latent (NVIDIA's projector schedule, our objective).

Frame 0 starts at the mean latent and runs ``steps_first`` steps; it also optimises the
generator's noise buffers (with NVIDIA's noise regularisation, re-normalised to zero mean / unit
variance after every step). Unlike NVIDIA's projector, which first redraws the noise at random,
the optimisation starts from the generator's own noise buffers (already a fixed random draw), so
a target rendered by the same generator is exactly reachable. After frame 0 the noise is frozen,
and every later frame — and every rendered frame — uses exactly that noise. Later frames start
from the previous frame's latent (or, with ``schedule.predict``, from the linear prediction of the
last two) and run ``steps`` steps, or fewer with early stopping. Each frame gets a fresh Adam (or the
moments the last frame's Adam ended with) and its own learning-rate ramp-up / cosine ramp-down and fading
w-noise over its own step count; with ``schedule.optimizer = "lbfgs"`` later frames take ``steps``
evaluations of quasi-Newton steps instead, with curvature pairs carried from frame to frame.

Determinism: all randomness of frame ``i`` (w-noise, framing jitter) comes from a
``torch.Generator`` seeded from ``(seed, i)``, drawn on the CPU, so a resumed run computes exactly
the latents of an uninterrupted one. The inner loop does no host syncs (``.item()``) except every
``report_every`` steps when a progress callback is given, and every ``early_stop_every`` steps when
early stopping is on.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stylepuppet.config import LossWeights, Schedule
from stylepuppet.devices import keep_freed_memory
from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.optim import lbfgs, losses
from stylepuppet.optim.objective import FrameTargets, IdentityObjective, LandmarkObjective
from stylepuppet.perceptual.look import LookMetric

StepCallback = Callable[[int, int, dict[str, float]], None]


def frame_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for frame ``index`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def frame_generator(seed: int, index: int) -> torch.Generator:
    """The CPU random generator of one frame (see the module docstring)."""
    return torch.Generator(device="cpu").manual_seed(frame_seed(seed, index))


def learning_rate(step: int, steps: int, schedule: Schedule) -> float:
    """NVIDIA's projector schedule: linear ramp-up, then a cosine ramp-down over the last part."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / schedule.lr_rampdown) if schedule.lr_rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if schedule.lr_rampup > 0:
        ramp *= min(1.0, t / schedule.lr_rampup)
    return schedule.lr * ramp


def w_noise_scale(step: int, steps: int, schedule: Schedule, latent_std: float) -> float:
    """Exploration noise on w: ``w_noise·latent_std``, fading (squared) to 0 over ``w_noise_ramp`` of the steps."""
    t = step / steps
    return latent_std * schedule.w_noise * max(0.0, 1.0 - t / schedule.w_noise_ramp) ** 2


def normalise_noise_(buffers: dict[str, Tensor]) -> None:
    """Zero mean, unit variance per buffer, in place (after every step, as NVIDIA's projector)."""
    with torch.no_grad():
        for buf in buffers.values():
            buf -= buf.mean()
            buf *= buf.square().mean().rsqrt()


def plateaued(history: Tensor, done: int, schedule: Schedule) -> bool:
    """Whether a frame's loss has stopped improving after ``done`` steps (``history[:done]`` holds the
    step losses): the mean of the last ``early_stop_every`` losses is within ``early_stop_tol``
    (relative) of the mean of the ones before. Reads the device only when a test is due."""
    k = schedule.early_stop_every
    if schedule.early_stop_tol <= 0 or done < max(schedule.early_stop_min, 2 * k) or done % k:
        return False
    before = history[done - 2 * k:done - k].mean()
    recent = history[done - k:done].mean()
    return bool(before - recent <= schedule.early_stop_tol * before.abs())


def predicted_start(ws: Sequence[Tensor], generator: LatentGenerator) -> Tensor | None:
    """Linear prediction ``w_{i−1} + (w_{i−1} − w_{i−2})`` [num_ws, dim] of the next frame's latent from the
    latents done so far, kept on the prior's support; None before two frames are done."""
    if len(ws) < 2:
        return None
    return generator.constrain((ws[-1] + (ws[-1] - ws[-2]))[None])[0]


@dataclass(frozen=True)
class FrameResult:
    """One optimised frame: its latent [num_ws, dim] (CPU float32), final unweighted loss terms and the
    number of steps it ran."""

    latent: Tensor
    terms: dict[str, float]
    steps: int


class Projector:
    """Projects frames one at a time into a :class:`LatentGenerator`'s latent space.

    ``landmark``, ``look`` and ``identity`` are the network-backed terms (``look`` with its prepared target, or
    None in free mode); terms with λ = 0 are not computed at all.
    """

    def __init__(self, generator: LatentGenerator, landmark: LandmarkObjective | None, weights: LossWeights,
                 schedule: Schedule, *, look: LookMetric | None = None, look_target: Any = None,
                 identity: IdentityObjective | None = None, seed: int = 0, anchor: Tensor | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.G = generator
        self.landmark = landmark if weights.landmark > 0 else None
        self.look = look if weights.look > 0 else None
        self.identity = identity if weights.identity > 0 else None
        if self.look is not None and look_target is None:
            raise ValueError("a look metric needs its prepared target (look.prepare(image))")
        self.look_target = look_target
        self.weights = weights
        self.schedule = schedule
        self.seed = seed
        self.device = torch.device(device)
        if self.device.type == "cpu":  # every step frees its graph: keep those pages for the next step
            keep_freed_memory()
        # Frame 0 starts here and the fidelity term pulls here: the generator's mean latent, or a chosen
        # ``anchor`` [num_ws or 1, dim] (the best of many random faces in free mode, the projected look in
        # keep-identity mode).
        mean = generator.mean_latent() if anchor is None else anchor
        self.mean = mean.detach().to(self.device, torch.float32).reshape(1, -1, generator.latent_dim)
        self.latent_std = float(generator.latent_std())
        self.shape = (1, generator.num_ws, generator.latent_dim)
        cuda = self.device.type == "cuda"
        if cuda and schedule.cuda_channels_last:
            for net in self._networks():
                net.to(memory_format=torch.channels_last)
        self._autocast = cuda and schedule.cuda_autocast == "bf16"
        #: The optimiser's state the next frame starts from: Adam's moments of the latent
        #: (``schedule.carry_moments``) or L-BFGS's curvature pairs (``schedule.optimizer = "lbfgs"``).
        self.carried: dict[str, Tensor] | None = None
        self._loss = torch.compile(self._step_loss) if cuda and schedule.cuda_compile else self._step_loss

    def _networks(self) -> list[nn.Module]:
        """The modules behind the generator and the network-backed terms (their own or held one level down)."""
        found: list[nn.Module] = []
        for holder in (self.G, getattr(self.landmark, "net", None), getattr(self.look, "metric", None),
                       getattr(self.identity, "net", None)):
            if isinstance(holder, nn.Module):
                found.append(holder)
            elif holder is not None:
                found.extend(v for v in vars(holder).values() if isinstance(v, nn.Module))
        return found

    # ------------------------------------------------------------------ objective

    def _terms(self, w: Tensor, images: Tensor, targets: FrameTargets, prev: Tensor | None,
               generator: torch.Generator | None, noise: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Unweighted loss terms (scalars) of one step; absent terms are simply missing."""
        terms: dict[str, Tensor] = {}
        if self.landmark is not None:
            terms["landmark"] = self.landmark(images, targets, generator).mean()
        if self.look is not None:
            terms["look"] = self.look(self.look_target, images).mean()
        if self.identity is not None:
            assert targets.face68 is not None, "the identity term needs the frame's iBUG-68 points"
            terms["identity"] = self.identity(images, targets.face68, generator).mean()
        if prev is not None and self.weights.smoothness > 0:
            terms["smoothness"] = losses.smoothness(w, prev).mean()
        if self.weights.fidelity > 0:
            terms["fidelity"] = losses.fidelity(w, self.mean).mean()
        if noise and self.weights.noise > 0:
            terms["noise"] = losses.noise_regularisation(noise.values())
        return terms

    def _total(self, terms: dict[str, Tensor]) -> Tensor:
        total = torch.zeros((), device=self.device)
        for name, value in terms.items():
            total = total + getattr(self.weights, name) * value.float()
        return total

    def _step_loss(self, w_in: Tensor, w: Tensor, targets: FrameTargets, prev: Tensor | None,
                   generator: torch.Generator, noise: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """The terms and weighted total of one step (networks under bf16 autocast if asked, on CUDA)."""
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self._autocast else contextlib.nullcontext()
        with amp:
            images = self.G.render(w_in, noise_mode="const")
            terms = self._terms(w, images, targets, prev, generator, noise)
        return terms, self._total(terms)

    @torch.no_grad()
    def evaluate(self, latent: Tensor, targets: FrameTargets, prev: Tensor | None = None) -> dict[str, float]:
        """Unweighted terms and the weighted total of a latent [num_ws, dim] or [1, num_ws, dim], at the
        plain framing (no jitter, no w-noise); noise regularisation is not included."""
        w = latent.to(self.device, torch.float32).reshape(self.shape)
        p = None if prev is None else prev.to(self.device, torch.float32).reshape(self.shape)
        terms = self._terms(w, self.G.render(w), targets, p, None, None)
        terms["total"] = self._total(terms)
        names = list(terms)
        values = torch.stack([terms[k].detach().float() for k in names]).cpu().tolist()
        return dict(zip(names, values))

    # ------------------------------------------------------------------ one frame

    def project(self, index: int, targets: FrameTargets, prev: Tensor | None = None, *, init: Tensor | None = None,
                first: bool | None = None, on_step: StepCallback | None = None,
                report_every: int = 10) -> FrameResult:
        """Optimise frame ``index`` (0 = the first frame of the run: anchor start, noise optimised).

        ``prev``: the previous frame's latent (smoothness term; default start). ``init`` overrides the
        start latent (e.g. a prediction from the last two frames). ``first``: whether this projection runs
        ``steps_first`` steps and optimises the noise (default: frame 0 does; False when the look's
        projection already did).
        """
        first = index == 0 if first is None else first
        rng = frame_generator(self.seed, index)
        schedule = self.schedule
        steps = schedule.steps_first if first else schedule.steps
        prev_w = None if prev is None else prev.to(self.device, torch.float32).reshape(self.shape)
        if init is not None:
            start = init.to(self.device, torch.float32).reshape(self.shape)
        elif prev_w is not None:
            start = prev_w
        else:
            start = self.mean.expand(self.shape)
        if not first and schedule.optimizer == "lbfgs":
            return self._project_lbfgs(index, targets, prev_w, start, steps, on_step, report_every)
        w = start.detach().clone().requires_grad_(True)
        noise = self.G.noise_buffers() if first else {}
        for buf in noise.values():  # start from the generator's own noise (a fixed random draw already)
            buf.requires_grad_(True)
        optimizer = torch.optim.Adam([w, *noise.values()], lr=schedule.lr, betas=(0.9, 0.999))
        if schedule.carry_moments and self.carried is not None and not first:
            optimizer.state[w] = {k: v.clone() for k, v in self.carried.items()}
        history = torch.empty(steps, device=self.device) if not first and schedule.early_stop_tol > 0 else None
        done = 0
        try:
            for step in range(steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, steps, schedule)
                sigma = w_noise_scale(step, steps, schedule, self.latent_std)
                w_in = w + torch.randn(self.shape, generator=rng).to(self.device) * sigma if sigma > 0 else w
                terms, loss = self._loss(w_in, w, targets, prev_w, rng, noise)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    w.copy_(self.G.constrain(w))
                if noise:
                    normalise_noise_(noise)
                done = step + 1
                stop = False
                if history is not None:
                    history[step] = loss.detach()
                    stop = plateaued(history, done, schedule)
                if on_step is not None and (done % report_every == 0 or done == steps or stop):
                    terms["total"] = loss
                    on_step(done, steps, {k: float(v.detach()) for k, v in terms.items()})
                if stop:
                    break
        finally:
            for buf in noise.values():
                buf.requires_grad_(False)
        if schedule.carry_moments and optimizer.state[w]:
            self.carried = {k: v.detach().clone() for k, v in optimizer.state[w].items()}
        latent = w.detach()
        return FrameResult(latent[0].cpu().clone(), self.evaluate(latent, targets, prev_w), done)

    def _project_lbfgs(self, index: int, targets: FrameTargets, prev_w: Tensor | None, start: Tensor, steps: int,
                       on_step: StepCallback | None, report_every: int) -> FrameResult:
        """A later frame by L-BFGS: ``steps`` evaluations from ``start``, the pairs carried in ``self.carried``."""

        def objective(x: Tensor) -> lbfgs.Evaluation:
            x = x.detach().requires_grad_(True)
            # the same framing jitter at every evaluation: one deterministic objective for the line search
            terms, loss = self._loss(x, x, targets, prev_w, frame_generator(self.seed, index), {})
            (grad,) = torch.autograd.grad(loss, x)
            terms["total"] = loss
            return lbfgs.Evaluation(x.detach(), float(loss.detach()), grad, terms)

        def report(used: int, ev: lbfgs.Evaluation) -> None:
            if on_step is not None and (used % report_every == 0 or used >= steps):
                on_step(used, steps, {k: float(v.detach()) for k, v in ev.terms.items()})

        empty = start.new_zeros((0, *start.shape))
        carried = self.carried or {}
        s, y = carried.get("s", empty), carried.get("y", empty)
        best, s, y, used = lbfgs.minimise(objective, start, steps, s, y, constrain=self.G.constrain, on_step=report)
        self.carried = {"s": s, "y": y}
        # without framing jitter the last evaluation was already at the plain framing: no extra forward pass
        plain = self.identity is None and (self.landmark is None or self.landmark.jitter_count == 0)
        terms = ({k: float(v.detach()) for k, v in best.terms.items()} if plain
                 else self.evaluate(best.x, targets, prev_w))
        return FrameResult(best.x[0].cpu().clone(), terms, used)
