import math

import torch

from stylepuppet.evaluation.baseline import random_walks, step_norms
from stylepuppet.generators.dcgan import sphere_project


def test_walks_take_the_runs_step_sizes_from_its_start():
    run = torch.cumsum(torch.randn(12, 1, 6, generator=torch.Generator().manual_seed(0)), dim=0)
    walks = random_walks(run, 5, lambda z: z, torch.Generator().manual_seed(1))
    assert walks.shape == (5, 12, 1, 6)
    assert torch.equal(walks[:, 0], run[0].expand(5, 1, 6))
    for walk in walks:
        assert torch.allclose(step_norms(walk), step_norms(run), atol=1e-5)
    assert not torch.allclose(walks[0], walks[1])
    again = random_walks(run, 5, lambda z: z, torch.Generator().manual_seed(1))
    assert torch.equal(walks, again)


def test_walks_on_the_sphere_keep_the_step_sizes():
    dim = 100
    start = sphere_project(torch.randn(1, 1, dim))
    run = [start]
    for _ in range(20):
        run.append(sphere_project(run[-1] + 0.05 * torch.randn(1, 1, dim)))
    run = torch.cat(run)
    walks = random_walks(run, 4, sphere_project, torch.Generator().manual_seed(0))
    assert torch.allclose(walks.norm(dim=-1), torch.full((4, 21, 1), math.sqrt(dim)), atol=1e-4)
    for walk in walks:
        assert torch.allclose(step_norms(walk), step_norms(run), rtol=1e-4)
