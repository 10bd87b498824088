import pytest
import torch

from stylepuppet.generators.interface import LatentGenerator
from stylepuppet.generators.latent_stats import latent_stats
from stylepuppet.generators.stylegan2 import Generator
from stylepuppet.generators.stylegan2_latents import StyleGAN2Latents


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, mapping_kwargs={"num_layers": 2},
                  synthesis_kwargs={"channel_base": 256, "channel_max": 16})
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    return G.eval()


@pytest.fixture(scope="module")
def stats(G):
    return latent_stats(G, num_samples=500, cache=False)


def test_is_a_latent_generator(G, stats):
    for space in ("w", "w+"):
        assert isinstance(StyleGAN2Latents(G, space, stats), LatentGenerator)
    with pytest.raises(ValueError, match="space"):
        StyleGAN2Latents(G, "z", stats)


def test_w_is_one_vector_broadcast_to_every_layer(G, stats):
    gen = StyleGAN2Latents(G, "w", stats)
    assert gen.num_ws == 1 and gen.latent_dim == 16 and gen.img_resolution == 16
    w = torch.randn(2, 1, 16)
    torch.testing.assert_close(gen.render(w), G.synthesis(w.repeat(1, G.num_ws, 1), noise_mode="const"))
    with pytest.raises(ValueError, match=r"latents must be \[N, 1, 16\] in w space"):
        gen.render(torch.randn(2, G.num_ws, 16))


def test_w_plus_is_one_vector_per_layer(G, stats):
    gen = StyleGAN2Latents(G, "w+", stats)
    assert gen.num_ws == G.num_ws == 6
    ws = torch.randn(2, G.num_ws, 16)
    torch.testing.assert_close(gen.render(ws), G.synthesis(ws, noise_mode="const"))
    assert torch.equal(gen.constrain(ws), ws)


def test_mean_and_spread(G, stats):
    gen = StyleGAN2Latents(G, "w+", stats)
    assert gen.latent_std() == stats.w_std
    # A randomly initialised net never tracked w_avg (all zeros): the sampled mean stands in.
    torch.testing.assert_close(gen.mean_latent(), stats.w_mean)
    trained = Generator(**G.init_kwargs)
    trained.load_state_dict(G.state_dict())
    with torch.no_grad():
        trained.mapping.w_avg.fill_(0.25)
    assert torch.equal(StyleGAN2Latents(trained, "w", stats).mean_latent(), torch.full((16,), 0.25))


def test_noise_buffers_are_the_live_noise_const_buffers(G, stats):
    gen = StyleGAN2Latents(G, "w", stats)
    bufs = gen.noise_buffers()
    assert sorted(bufs) == sorted(n for n, _ in G.named_buffers() if n.endswith("noise_const"))
    assert "synthesis.b4.conv1.noise_const" in bufs and "synthesis.b16.conv0.noise_const" in bufs
    w = gen.mean_latent().reshape(1, 1, -1)
    before = gen.render(w)
    buf = bufs["synthesis.b16.conv1.noise_const"]
    saved = buf.clone()
    with torch.no_grad():
        buf.add_(1.0)
    try:
        assert not torch.allclose(gen.render(w), before)
        assert buf is dict(G.named_buffers())["synthesis.b16.conv1.noise_const"]
    finally:
        with torch.no_grad():
            buf.copy_(saved)


def test_candidate_latents_are_mapped_random_faces(G, stats):
    for space in ("w", "w+"):
        gen = StyleGAN2Latents(G, space, stats)
        cands = gen.candidate_latents(3, torch.Generator().manual_seed(4))
        assert cands.shape == (3, gen.num_ws, 16)
        z = torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            expected = G.mapping(z, None)[:, :1].expand(-1, gen.num_ws, -1)
        torch.testing.assert_close(cands, expected)
        assert torch.equal(cands, gen.candidate_latents(3, torch.Generator().manual_seed(4)))
